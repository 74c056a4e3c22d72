//! The operating system's small services that every layer uses: directories, private files,
//! the terminal, and the XML escaper for the documents handed to the OS. Per-OS code for these lives here, behind `#[cfg]`, and nowhere else.

pub mod dirs;
pub mod private;
pub mod terminal;
pub mod xml;
