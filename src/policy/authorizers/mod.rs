//! The built-in authorizer types. (Being written.)
