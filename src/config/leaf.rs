//! Configuration leaves ([`V`]): a value that fails to parse records its
//! error and takes its default, so one run reports every bad value.
//!
//! serde_yaml_ng reads a stream of events; a leaf that gives up in the
//! middle of a sequence or mapping leaves the stream out of step, and the
//! next value would be read from the wrong event (serde_yaml_ng panics
//! there). Two rules keep it in step: a leaf whose list fails on one item
//! skips the rest of the list (`Guard`), and an error that left a
//! sequence or mapping half read ("invalid type: sequence/map") is not
//! recorded but ends the lenient pass, after which the loader parses
//! strictly to locate it.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::Deserialize;
use serde::de::{
    Deserializer, EnumAccess, Error as _, MapAccess, SeqAccess, VariantAccess, Visitor,
};

thread_local! {
    static ERRORS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// Set for the strict pass: leaves propagate their errors.
    static STRICT: Cell<bool> = const { Cell::new(false) };
}

/// A configuration leaf: a value of `T`, or (when it fails to parse) the
/// default with the error recorded for the loader to report.
#[derive(Debug, Clone, PartialEq)]
pub struct V<T>(pub T);

impl<T> std::ops::Deref for V<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Default> Default for V<T> {
    fn default() -> Self {
        V(T::default())
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for V<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if STRICT.with(Cell::get) {
            return T::deserialize(d).map(V);
        }
        match T::deserialize(Guard(d)) {
            Ok(v) => Ok(V(v)),
            Err(e) => {
                let m = e.to_string();
                if loses_step(&m) {
                    return Err(e);
                }
                ERRORS.with(|errs| errs.borrow_mut().push(m));
                Ok(V(T::default()))
            }
        }
    }
}

/// True for an error after which the event stream is out of step: a
/// sequence or mapping met where a scalar was wanted, its start read and the
/// rest not.
pub(super) fn loses_step(message: &str) -> bool {
    message.contains("invalid type: sequence") || message.contains("invalid type: map")
}

/// Starts a lenient pass on this thread.
pub(super) fn begin() {
    ERRORS.with(|e| e.borrow_mut().clear());
    STRICT.with(|s| s.set(false));
}

/// The errors the leaves recorded since [`begin`].
pub(super) fn take_errors() -> Vec<String> {
    ERRORS.with(|e| std::mem::take(&mut *e.borrow_mut()))
}

/// Runs `f` with leaves propagating their errors.
pub(super) fn strictly<R>(f: impl FnOnce() -> R) -> R {
    STRICT.with(|s| s.set(true));
    let r = f();
    STRICT.with(|s| s.set(false));
    r
}

/// A deserializer that forwards everything, except that a sequence whose
/// visitor fails on an item has its remaining items skipped before the
/// error comes back: the stream stays in step.
struct Guard<D>(D);

/// [`Guard`]'s sequence visitor: an item's error becomes a value, after
/// the rest of the sequence is read.
struct Drain<V>(V);

/// An item's error, carried past the end of its sequence.
struct ItemError(String);

impl<'de, V: Visitor<'de>> Visitor<'de> for Drain<V> {
    type Value = Result<V::Value, ItemError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        match self.0.visit_seq(&mut seq) {
            Ok(v) => Ok(Ok(v)),
            Err(e) => {
                let m = e.to_string();
                if loses_step(&m) {
                    return Err(e);
                }
                while seq.next_element::<Skip>()?.is_some() {}
                Ok(Err(ItemError(m)))
            }
        }
    }
}

/// Any value, read and dropped. Unlike `IgnoredAny` it is read with
/// `deserialize_any`, so `serde_ignored` does not report the rest of a
/// failed list as unknown fields.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Skip)
    }
}

macro_rules! skip_scalars {
    ($($name:ident: $t:ty),* $(,)?) => {
        $(
            fn $name<E: serde::de::Error>(self, _: $t) -> Result<Skip, E> {
                Ok(Skip)
            }
        )*
    };
}

impl<'de> Visitor<'de> for Skip {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    skip_scalars!(
        visit_bool: bool,
        visit_i64: i64,
        visit_i128: i128,
        visit_u64: u64,
        visit_u128: u128,
        visit_f64: f64,
        visit_str: &str,
        visit_bytes: &[u8],
    );

    fn visit_unit<E: serde::de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Skip, D::Error> {
        Skip::deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Skip, D::Error> {
        Skip::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Skip, A::Error> {
        let (Skip, v) = data.variant::<Skip>()?;
        v.newtype_variant::<Skip>()
    }
}

macro_rules! forward {
    ($($name:ident),* $(,)?) => {
        $(
            fn $name<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
                self.0.$name(v)
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guard<D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        self.0
            .deserialize_seq(Drain(v))?
            .map_err(|ItemError(m)| D::Error::custom(m))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_newtype_struct(name, v)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple(len, v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple_struct(name, len, v)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_struct(name, fields, v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, v)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}
