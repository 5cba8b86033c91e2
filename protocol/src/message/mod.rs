//! Messages: what the body of a client frame means. `opcode` is the opcode table,
//! `request` the client's messages, `response` the server's answers and typed errors,
//! `types` the values both carry (re-exporting `admin`, `cell`, `consistency`,
//! `table_options`, `topology` and `user`). Encodings are built on [`crate::wire`].

pub mod admin;
pub mod cell;
pub mod consistency;
pub mod opcode;
pub mod request;
pub mod response;
pub mod table_options;
pub mod topology;
pub mod types;
pub mod user;
