//! The HTTP routes, one module per resource; handlers are named `verb_noun`.

pub(crate) mod dashboard;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod page;
