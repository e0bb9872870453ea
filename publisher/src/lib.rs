//! The market simulator (lands with the publisher issue).
