//! [`Name`]: a short immutable string shared by the records that carry it.

use std::{borrow::Borrow, fmt, ops::Deref, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An immutable string that clones by reference count: a batch's records share their
/// line's name (and an enforcement rule's id) instead of each holding a copy, so decoding
/// a record allocates nothing for it and the record stays small (16 bytes, not 24).
///
/// It compares, hashes and orders as the `str` it holds, and reads as one (`Deref`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Arc<str>);

impl Name {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both are the same shared string (not just equal ones): a check that
    /// touches no reference count and reads no bytes.
    pub fn ptr_eq(a: &Name, b: &Name) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl Default for Name {
    fn default() -> Self {
        Name(Arc::from(""))
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name(Arc::from(s))
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name(Arc::from(s))
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Self {
        Name(Arc::from(s.as_str()))
    }
}

impl From<&Name> for Name {
    fn from(n: &Name) -> Self {
        n.clone()
    }
}

impl From<Name> for String {
    fn from(n: Name) -> Self {
        n.0.to_string()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, o: &str) -> bool {
        *self.0 == *o
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, o: &&str) -> bool {
        *self.0 == **o
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, o: &String) -> bool {
        *self.0 == **o
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, o: &Name) -> bool {
        *self == *o.0
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, o: &Name) -> bool {
        **self == *o.0
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, o: &Name) -> bool {
        **self == *o.0
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Name::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_reads_compares_and_serialises_as_its_string() {
        let n = Name::from("hk-1");
        let m = n.clone();
        assert!(Arc::ptr_eq(&n.0, &m.0), "a clone shares the string");
        assert_eq!(n, "hk-1");
        assert_eq!("hk-1", n);
        assert_eq!(n, String::from("hk-1"));
        assert_eq!(n.len(), 4);
        assert_eq!(format!("{n} {n:?}"), "hk-1 \"hk-1\"");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"hk-1\"");
        let back: Name = serde_json::from_str("\"hk-1\"").unwrap();
        assert_eq!(back, n);
        let set: std::collections::HashSet<Name> = [n].into();
        assert!(set.contains("hk-1"), "looked up by &str");
        assert_eq!(Name::default(), "");
    }
}
