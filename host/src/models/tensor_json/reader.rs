//! The one-pass reader of JSON inputs: serde visitors that take numbers straight from the JSON
//! text into [`Numbers`], checking each list against the shape of the first path and the
//! bounds as they go (no `serde_json::Value` tree, nothing quadratic).

use super::{subject, JsonInputs, JsonLimits, Node, Num, Numbers, TensorJsonError, MAX_DEPTH};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::{
    cell::{Cell, RefCell},
    fmt,
};

/// Reads [`JsonInputs`] out of a larger JSON document (the `inputs` of a predict body) with
/// the bounds of [`JsonLimits`]. After a failed read, [`InputsReader::failure`] holds the
/// plain message of a bound or shape error (serde's own error adds a position to it).
#[derive(Debug)]
pub struct InputsReader {
    limits: JsonLimits,
    count: Cell<usize>,
    failure: RefCell<Option<TensorJsonError>>,
}

impl InputsReader {
    /// A reader with `limits`.
    pub fn new(limits: JsonLimits) -> Self {
        Self {
            limits,
            count: Cell::new(0),
            failure: RefCell::new(None),
        }
    }

    /// The seed to hand to `MapAccess::next_value_seed` (or to call on a deserializer).
    pub fn seed(&self) -> impl for<'de> DeserializeSeed<'de, Value = JsonInputs> + '_ {
        RootSeed(self)
    }

    /// The bound or shape error that stopped the last read, if one did.
    pub fn failure(&self) -> Option<TensorJsonError> {
        self.failure.borrow_mut().take()
    }

    fn fail<E: de::Error>(&self, message: String) -> E {
        let e = E::custom(&message);
        *self.failure.borrow_mut() = Some(TensorJsonError(message));
        e
    }

    fn count<E: de::Error>(&self, name: Option<&str>) -> Result<(), E> {
        let n = self.count.get() + 1;
        if n > self.limits.max_elements {
            return Err(self.fail(format!(
                "{} holds too many numbers: `max_tensor_elements` is {} per request",
                subject(name),
                self.limits.max_elements
            )));
        }
        self.count.set(n);
        Ok(())
    }

    /// Reads `de` whole into inputs.
    pub(super) fn read<'de, D: Deserializer<'de>>(
        &self,
        de: D,
    ) -> Result<JsonInputs, TensorJsonError> {
        self.seed().deserialize(de).map_err(|e: D::Error| {
            self.failure()
                .unwrap_or_else(|| TensorJsonError(format!("invalid inputs: {e}")))
        })
    }
}

struct RootSeed<'r>(&'r InputsReader);

impl<'de> DeserializeSeed<'de> for RootSeed<'_> {
    type Value = JsonInputs;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<JsonInputs, D::Error> {
        NodeSeed {
            reader: self.0,
            name: None,
            objects: 0,
        }
        .deserialize(de)
        .map(JsonInputs)
    }
}

/// A value at object level: the inputs object (`objects` 0), an input's value (1) or a field
/// of an explicit tensor (2).
struct NodeSeed<'r, 'n> {
    reader: &'r InputsReader,
    name: Option<&'n str>,
    objects: usize,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, '_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Node, D::Error> {
        de.deserialize_any(self)
    }
}

impl NodeSeed<'_, '_> {
    fn scalar<E: de::Error>(&self, v: Num) -> Result<Node, E> {
        self.reader.count(self.name)?;
        Ok(Node::Numbers(Numbers {
            shape: Some(Vec::new()),
            values: vec![v],
        }))
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, '_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("numbers, nested lists or {dtype, shape, data}")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        self.scalar(Num::I(i64::from(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        self.scalar(Num::I(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        self.scalar(i64::try_from(v).map_or(Num::U(v), Num::I))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        self.scalar(Num::F(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Text(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Node, A::Error> {
        let mut shape = Shape::default();
        let mut values = Vec::new();
        let mut list = List {
            reader: self.reader,
            name: self.name,
            shape: &mut shape,
            values: &mut values,
        };
        list.read(seq, 0)?;
        Ok(Node::Numbers(Numbers {
            shape: shape.finish(),
            values,
        }))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        if self.objects >= 2 {
            return Err(self.reader.fail(format!(
                "{}: objects nest too deep; a tensor is numbers, nested lists or \
                 {{dtype, shape, data}}",
                subject(self.name)
            )));
        }
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if entries.iter().any(|(k, _)| *k == key) {
                // Skip the value first so the message is not lost to a later syntax error.
                map.next_value::<IgnoredAny>()?;
                return Err(self.reader.fail(if self.objects == 0 {
                    format!("input `{key}` is given twice")
                } else {
                    format!("{}: `{key}` is given twice", subject(self.name))
                }));
            }
            let node = map.next_value_seed(NodeSeed {
                reader: self.reader,
                name: if self.objects == 0 {
                    Some(key.as_str())
                } else {
                    self.name
                },
                objects: self.objects + 1,
            })?;
            entries.push((key, node));
        }
        Ok(Node::Object(entries))
    }
}

/// The shape of nested lists, learnt from the first path and checked on every sibling: each
/// list at depth `d` must have the length of the first list closed at that depth, and every
/// number must sit at the same depth (the rank).
#[derive(Debug, Default)]
struct Shape {
    dims: Vec<Option<usize>>,
    rank: Option<usize>,
    ragged: bool,
}

impl Shape {
    /// A list opens at `depth` (0: the outermost).
    fn open(&mut self, depth: usize) {
        if self.rank.is_some_and(|r| depth >= r) {
            self.ragged = true;
        }
    }

    /// A number at `depth` (how many lists hold it).
    fn leaf(&mut self, depth: usize) {
        match self.rank {
            None => self.rank = Some(depth),
            Some(r) if r != depth => self.ragged = true,
            Some(_) => {}
        }
    }

    /// The list at `depth` closes with `len` items.
    fn close(&mut self, depth: usize, len: usize) {
        if self.dims.len() <= depth {
            self.dims.resize(depth + 1, None);
        }
        match self.dims[depth] {
            None => self.dims[depth] = Some(len),
            Some(first) if first != len => self.ragged = true,
            Some(_) => {}
        }
        if len == 0 {
            // An empty list ends its path: the shape ends with this 0.
            self.leaf(depth + 1);
        }
    }

    fn finish(self) -> Option<Vec<i64>> {
        if self.ragged {
            return None;
        }
        let rank = self.rank.unwrap_or(0);
        self.dims
            .get(..rank)?
            .iter()
            .map(|d| d.and_then(|d| i64::try_from(d).ok()))
            .collect()
    }
}

/// Reads nested lists of numbers into `values`, tracking their `shape`.
struct List<'r, 'n, 'a> {
    reader: &'r InputsReader,
    name: Option<&'n str>,
    shape: &'a mut Shape,
    values: &'a mut Vec<Num>,
}

impl List<'_, '_, '_> {
    /// Reads the items of a list opened at `depth`.
    fn read<'de, A: SeqAccess<'de>>(&mut self, mut seq: A, depth: usize) -> Result<(), A::Error> {
        if depth >= MAX_DEPTH {
            return Err(self.reader.fail(format!(
                "{}: lists nest deeper than {MAX_DEPTH} levels, the most a tensor may have",
                subject(self.name)
            )));
        }
        self.shape.open(depth);
        let mut len = 0;
        while seq
            .next_element_seed(Item {
                list: &mut *self,
                depth: depth + 1,
            })?
            .is_some()
        {
            len += 1;
        }
        self.shape.close(depth, len);
        Ok(())
    }

    fn number<E: de::Error>(&mut self, depth: usize, v: Num) -> Result<(), E> {
        self.reader.count(self.name)?;
        self.shape.leaf(depth);
        self.values.push(v);
        Ok(())
    }

    fn not_a_number<E: de::Error>(&self, what: &str) -> E {
        self.reader.fail(format!(
            "{}: data holds {what}, expected numbers",
            subject(self.name)
        ))
    }
}

/// One item of a list, `depth` lists deep.
struct Item<'l, 'r, 'n, 'a> {
    list: &'l mut List<'r, 'n, 'a>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Item<'_, '_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Item<'_, '_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or a list")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.list.number(self.depth, Num::I(i64::from(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.list.number(self.depth, Num::I(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        let n = i64::try_from(v).map_or(Num::U(v), Num::I);
        self.list.number(self.depth, n)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.list.number(self.depth, Num::F(v))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(self.list.not_a_number("a string"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.list.not_a_number("null"))
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(self.list.not_a_number("null"))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.list.not_a_number("an object"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        // This list sits `depth` lists deep, so it opens at that depth.
        self.list.read(seq, self.depth)
    }
}
