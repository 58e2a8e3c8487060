//! The field names of a serde struct, read from its `Deserialize` impl.
//!
//! A derived `Deserialize` for a struct calls `deserialize_struct` with the
//! names of its fields as they appear on the wire (after `rename_all`,
//! without `skip`ped ones). A deserializer that records them and gives up
//! tells the OpenAPI document which fields a request or response has,
//! without a schema crate. Types that are not plain structs (maps,
//! `flatten`, enums) yield no names.

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The wire names of `T`'s fields, or nothing if `T` is not a plain struct.
pub(crate) fn field_names<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
    let mut names = None;
    let _ = T::deserialize(FieldNames(&mut names));
    names.map(<[&str]>::to_vec).unwrap_or_default()
}

struct FieldNames<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::field_names;

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Request {
        #[serde(skip)]
        files: (),
        output_file_name: Option<String>,
        level: u8,
    }

    #[test]
    fn reads_wire_names_without_skipped_fields() {
        assert_eq!(field_names::<Request>(), ["outputFileName", "level"]);
        assert!(field_names::<String>().is_empty());
        assert!(field_names::<std::collections::HashMap<String, u8>>().is_empty());
    }
}
