//! A small, strict JSON Schema check for the OpenAPI document's schemas:
//! `$ref`, `type`, `enum`, `const`, `properties` (unknown properties are
//! errors, so the document cannot drift from what the server sends),
//! `required`, `items`, `anyOf`/`oneOf`, `minimum`/`maximum`.

use serde_json::Value;

/// Checks `value` against `schema`, resolving `$ref`s in `document`.
pub fn check(document: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    check_at(document, schema, value, "$")
}

fn check_at(document: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = reference
            .strip_prefix('#')
            .ok_or(format!("{at}: external $ref {reference}"))?;
        let target = document
            .pointer(pointer)
            .ok_or(format!("{at}: unresolved $ref {reference}"))?;
        return check_at(document, target, value, at);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let errors: Vec<String> = options
                .iter()
                .filter_map(|option| check_at(document, option, value, at).err())
                .collect();
            if errors.len() == options.len() {
                return Err(format!("{at}: matches none of {key}: {errors:?}"));
            }
        }
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.iter().any(|t| has_type(value, t)) {
            return Err(format!("{at}: {value} is not of type {types:?}"));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {options:?}"));
    }
    if let Some(expected) = schema.get("const")
        && expected != value
    {
        return Err(format!("{at}: {value} is not {expected}"));
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64())
        && n < min
    {
        return Err(format!("{at}: {n} < {min}"));
    }
    if let (Some(max), Some(n)) = (schema.get("maximum").and_then(Value::as_f64), value.as_f64())
        && n > max
    {
        return Err(format!("{at}: {n} > {max}"));
    }
    if let Some(object) = value.as_object() {
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, property) in object {
                let schema = properties
                    .get(name)
                    .ok_or(format!("{at}: undocumented property `{name}`"))?;
                check_at(document, schema, property, &format!("{at}.{name}"))?;
            }
        }
        for name in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                return Err(format!("{at}: missing required `{name}`"));
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check_at(document, items, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        _ => false,
    }
}
