//! Policy documents: semantic comparison and rendering.
//!
//! IAM treats every list in a policy (statements, actions, resources, principals, condition
//! values) as a set, and a single value as a one-element list. Comparing canonical forms
//! means a reordered or reformatted document never creates a policy version.

use serde_json::Value;

/// The canonical form: keys sorted (serde_json's map is ordered), lists sorted and
/// de-duplicated, one-element lists unwrapped.
pub fn canonical(doc: &Value) -> Value {
    match doc {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(canonical).collect();
            items.sort_by_cached_key(|v| v.to_string());
            items.dedup();
            if items.len() == 1 {
                items.remove(0)
            } else {
                Value::Array(items)
            }
        }
        other => other.clone(),
    }
}

/// Whether two documents grant the same thing.
pub fn equivalent(a: &Value, b: &Value) -> bool {
    canonical(a) == canonical(b)
}

/// Parses a document as IAM returns it (JSON text). Unparseable text never equals a spec.
pub fn parse(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

/// The JSON text sent to IAM.
pub fn render(doc: &Value) -> String {
    doc.to_string()
}

/// Checks what IAM would reject without a round trip, so the message is clear.
pub fn validate(doc: &Value) -> Result<(), String> {
    let Some(map) = doc.as_object() else {
        return Err("the policy document must be an object with Version and Statement".into());
    };
    if !map.contains_key("Statement") {
        return Err("the policy document has no Statement".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_single_values_do_not_matter() {
        let a = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}]});
        let b = json!({"Statement": {"Resource": ["*"], "Action": "s3:GetObject", "Effect": "Allow"}, "Version": "2012-10-17"});
        assert!(equivalent(&a, &b));
    }

    #[test]
    fn list_order_does_not_matter_but_content_does() {
        let a = json!({"Statement": [{"Action": ["s3:A", "s3:B"]}]});
        let b = json!({"Statement": [{"Action": ["s3:B", "s3:A", "s3:A"]}]});
        let c = json!({"Statement": [{"Action": ["s3:B", "s3:C"]}]});
        assert!(equivalent(&a, &b));
        assert!(!equivalent(&a, &c));
    }

    #[test]
    fn effect_change_is_a_difference() {
        let a = json!({"Statement": [{"Effect": "Allow", "Action": "*"}]});
        let b = json!({"Statement": [{"Effect": "Deny", "Action": "*"}]});
        assert!(!equivalent(&a, &b));
    }

    #[test]
    fn iam_text_round_trips() {
        let a = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]});
        let back = parse(&render(&a)).unwrap();
        assert!(equivalent(&a, &back));
        assert!(parse("not json").is_none());
    }

    #[test]
    fn validation_explains_shape_errors() {
        assert!(validate(&json!("text")).is_err());
        assert!(
            validate(&json!({"Version": "2012-10-17"}))
                .unwrap_err()
                .contains("Statement")
        );
        assert!(validate(&json!({"Statement": []})).is_ok());
    }
}
