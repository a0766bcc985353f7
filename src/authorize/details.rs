//! Authorization details (RFC 9396) as a person reads them on the consent page.

use serde_json::Value;

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One sentence per authorization detail: payments as "Pay 45.00 EUR to Acme", the RFC 9396 common
/// fields (`actions`, `locations`, `identifier`) in words, anything else as its type and fields.
pub fn describe(details: &Value) -> Vec<String> {
    let Some(items) = details.as_array() else {
        return vec![];
    };
    items.iter().map(describe_one).collect()
}

fn describe_one(d: &Value) -> String {
    let kind = text(d.get("type")).unwrap_or_else(|| "unspecified".into());
    let amount = d
        .get("instructedAmount")
        .or_else(|| d.get("amount"))
        .and_then(|a| match a {
            Value::Object(_) => Some((text(a.get("amount"))?, text(a.get("currency")))),
            other => Some((text(Some(other))?, text(d.get("currency")))),
        });
    if let Some((amount, currency)) = amount {
        let currency = currency.map(|c| format!(" {c}")).unwrap_or_default();
        let to = text(d.get("creditorName"))
            .or_else(|| text(d.get("payee")))
            .map(|p| format!(" to {p}"))
            .unwrap_or_default();
        return format!("Pay {amount}{currency}{to}");
    }
    let list = |key: &str| -> Option<String> {
        let v: Vec<String> = d
            .get(key)?
            .as_array()?
            .iter()
            .filter_map(|x| text(Some(x)))
            .collect();
        (!v.is_empty()).then(|| v.join(", "))
    };
    let mut parts = vec![kind];
    if let Some(actions) = list("actions") {
        parts.push(format!("may {actions}"));
    }
    if let Some(id) = text(d.get("identifier")) {
        parts.push(format!("on {id}"));
    }
    if let Some(locations) = list("locations") {
        parts.push(format!("at {locations}"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payments_read_as_sentences() {
        let d = json!([
            {"type": "payment_initiation", "instructedAmount": {"currency": "EUR", "amount": "45.00"},
             "creditorName": "Acme"},
            {"type": "account_information", "actions": ["list_accounts", "read_balances"],
             "locations": ["https://example.com/accounts"]}
        ]);
        assert_eq!(
            describe(&d),
            vec![
                "Pay 45.00 EUR to Acme".to_owned(),
                "account_information may list_accounts, read_balances at https://example.com/accounts".into()
            ]
        );
        assert!(describe(&Value::Null).is_empty());
    }
}
