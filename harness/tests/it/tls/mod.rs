//! TLS on the gateway (`--tls-cert`, `--tls-key`): clients over `wss://`
//! receive prices; the certificate is reloaded on a file change and on
//! SIGHUP while connections stay up, and new connections see the new one;
//! a bad reload keeps the old one; garbage and slow handshakes on the TLS
//! port neither disturb other clients nor outlast the handshake budget.

mod hostile;
mod reload;
mod support;
