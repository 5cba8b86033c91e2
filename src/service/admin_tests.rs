//! Unit tests of the operator commands: a real engine in a temp dir; membership through
//! real gossip runtimes on loopback TCP (ports chosen by the OS).
