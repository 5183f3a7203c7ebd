//! The model definition's one error type, and [`Site`], the place in a definition it names.

use std::fmt;

/// Where in a model definition something is: an Engine node, a plain-form layer, or a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    /// An Engine node, by its `id`.
    Node(i64),
    /// A plain-form layer, by its index in `layers`.
    Layer(usize),
    /// A top-level field of the plain form (`input`, `loss`, `optimizer`) or the caller's
    /// dataset description (`dataset`).
    Field(&'static str),
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Site::Node(id) => write!(f, "node {id}"),
            Site::Layer(index) => write!(f, "layers[{index}]"),
            Site::Field(name) => write!(f, "`{name}`"),
        }
    }
}

/// Why a model definition was refused. Every message names the node, layer or field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// The text is not JSON of the expected shape.
    #[error("the model definition is not valid: {0}")]
    Json(String),
    /// The text is longer than [`super::MAX_DEFINITION_BYTES`].
    #[error("the model definition is {len} bytes; at most {max} are accepted")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More nodes, links or layers than allowed.
    #[error("the model definition has {count} {what}; at most {max} are allowed")]
    TooLarge {
        /// `nodes`, `links` or `layers`.
        what: &'static str,
        /// How many it has.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An Engine node type number this node does not know.
    #[error("node {node}: unknown node type {type_id}")]
    UnknownType {
        /// The node's id.
        node: i64,
        /// Its `type`.
        type_id: i64,
    },
    /// A known node or layer type this node refuses (Lambda, Subgraph) or does not run yet.
    #[error("{at}: {name} is {reason}")]
    Unsupported {
        /// The node or layer.
        at: Site,
        /// The type's name.
        name: String,
        /// Why, e.g. "not supported yet".
        reason: &'static str,
    },
    /// A link that does not fit the graph: a missing node, a bad pin, a second link into a pin.
    #[error("link {link}: {reason}")]
    Link {
        /// The link's `id`, else its index in `links`.
        link: i64,
        /// What is wrong.
        reason: String,
    },
    /// The structure is not one this node runs: cycles, branches, disconnected nodes, duplicates.
    #[error("{at}: {reason}")]
    Structure {
        /// The node at fault.
        at: Site,
        /// What is wrong.
        reason: String,
    },
    /// A parameter that does not parse or is out of range.
    #[error("{at}: {key}: {reason}")]
    Parameter {
        /// The node, layer or field.
        at: Site,
        /// The parameter's key.
        key: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// Shapes that do not fit.
    #[error("{at}: {reason}")]
    Shape {
        /// The layer whose input does not fit.
        at: Site,
        /// What is wrong.
        reason: String,
    },
    /// Something the definition must have and does not.
    #[error("the model definition has no {0}")]
    Missing(&'static str),
    /// More trainable parameters than [`super::MAX_PARAMETERS`].
    #[error("the model has {count} trainable parameters; at most {max} are allowed")]
    TooManyParameters {
        /// The model's parameter count.
        count: u64,
        /// The limit.
        max: u64,
    },
}

impl GraphError {
    /// A [`GraphError::Parameter`] for `key` at `at`.
    pub(crate) fn param(at: &Site, key: &str, reason: impl Into<String>) -> Self {
        GraphError::Parameter {
            at: at.clone(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// A [`GraphError::Shape`] at `at`.
    pub(crate) fn shape(at: &Site, reason: impl Into<String>) -> Self {
        GraphError::Shape {
            at: at.clone(),
            reason: reason.into(),
        }
    }

    /// A [`GraphError::Structure`] at `at`.
    pub(crate) fn structure(at: &Site, reason: impl Into<String>) -> Self {
        GraphError::Structure {
            at: at.clone(),
            reason: reason.into(),
        }
    }
}
