//! An X11 proxy in front of the test's Xvfb that hides one extension: it answers
//! QueryExtension for that name with "not present" and passes everything else through. Xvfb
//! can be started without XFixes (`-extension XFIXES`), but this build then aborts when the
//! first client disconnects, so a server "without XFixes" is this proxy.
//!
//! The proxy is a display of its own (`:M`, on the abstract socket an X server would take,
//! the first free one from 400 up); it reaches the server by its abstract socket. It follows the request stream (lengths, BIG-REQUESTS lengths) to number the requests, and
//! the reply stream to find the reply to each QueryExtension for the hidden name.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::{Arc, Mutex};

const QUERY_EXTENSION: u8 = 98;

pub struct XProxy {
    number: u32,
}

fn x_socket(n: u32) -> SocketAddr {
    SocketAddr::from_abstract_name(format!("/tmp/.X11-unix/X{n}")).unwrap()
}

impl XProxy {
    /// Forwards each connection to display `:display`, without the extension `hide`.
    pub fn start(display: u32, hide: &'static str) -> XProxy {
        let (listener, number) = (400..600)
            .find_map(|n| UnixListener::bind_addr(&x_socket(n)).ok().map(|l| (l, n)))
            .expect("a free display number for the X proxy");
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = UnixStream::connect_addr(&x_socket(display)) else {
                    continue;
                };
                relay(client, server, hide);
            }
        });
        XProxy { number }
    }

    /// The `DISPLAY` value that reaches the proxy.
    pub fn display(&self) -> String {
        format!(":{}", self.number)
    }
}

fn relay(client: UnixStream, server: UnixStream, hide: &'static str) {
    let hidden: Arc<Mutex<HashSet<u16>>> = Arc::default();
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let requests = {
        let hidden = hidden.clone();
        move || {
            let _ = requests(client, server, hide, &hidden);
        }
    };
    let replies = move || {
        let _ = replies(s2, c2, &hidden);
    };
    std::thread::spawn(requests);
    std::thread::spawn(replies);
}

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

fn read_n(from: &mut UnixStream, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0; n];
    from.read_exact(&mut buf)?;
    Ok(buf)
}

/// Client → server: numbers the requests and notes each QueryExtension for `hide`.
fn requests(
    mut client: UnixStream,
    mut server: UnixStream,
    hide: &str,
    hidden: &Mutex<HashSet<u16>>,
) -> std::io::Result<()> {
    let result = (|| {
        let setup = read_n(&mut client, 12)?;
        let little = setup[0] == b'l';
        let u16_at = |b: &[u8], i: usize| {
            let v = [b[i], b[i + 1]];
            if little {
                u16::from_le_bytes(v)
            } else {
                u16::from_be_bytes(v)
            }
        };
        let auth = pad4(u16_at(&setup, 6) as usize) + pad4(u16_at(&setup, 8) as usize);
        let rest = read_n(&mut client, auth)?;
        server.write_all(&setup)?;
        server.write_all(&rest)?;
        let mut seq: u16 = 0;
        loop {
            let mut head = read_n(&mut client, 4)?;
            let mut words = u16_at(&head, 2) as usize;
            if words == 0 {
                // BIG-REQUESTS: the length follows, in 4-byte units including both words.
                let ext = read_n(&mut client, 4)?;
                let v = [ext[0], ext[1], ext[2], ext[3]];
                words = if little {
                    u32::from_le_bytes(v)
                } else {
                    u32::from_be_bytes(v)
                } as usize;
                head.extend_from_slice(&ext);
            }
            let body = read_n(&mut client, (words * 4).saturating_sub(head.len()))?;
            seq = seq.wrapping_add(1);
            if head[0] == QUERY_EXTENSION && body.len() >= 4 {
                let len = u16_at(&body, 0) as usize;
                if body.get(4..4 + len) == Some(hide.as_bytes()) {
                    hidden.lock().unwrap().insert(seq);
                }
            }
            server.write_all(&head)?;
            server.write_all(&body)?;
        }
    })();
    let _ = server.shutdown(Shutdown::Both);
    let _ = client.shutdown(Shutdown::Both);
    result
}

/// Server → client: the reply to a noted QueryExtension says "not present".
fn replies(
    mut server: UnixStream,
    mut client: UnixStream,
    hidden: &Mutex<HashSet<u16>>,
) -> std::io::Result<()> {
    let result = (|| {
        let head = read_n(&mut server, 8)?;
        let little = true; // the tests' clients (x11rb) are little-endian on this machine
        let words = u16::from_le_bytes([head[6], head[7]]) as usize;
        let rest = read_n(&mut server, words * 4)?;
        client.write_all(&head)?;
        client.write_all(&rest)?;
        loop {
            let mut packet = read_n(&mut server, 32)?;
            let kind = packet[0] & 0x7f;
            // Replies (1) and generic events (35) carry more than 32 bytes.
            if kind == 1 || kind == 35 {
                let extra = u32::from_le_bytes([packet[4], packet[5], packet[6], packet[7]]);
                packet.extend(read_n(&mut server, extra as usize * 4)?);
            }
            if kind == 1 && little {
                let seq = u16::from_le_bytes([packet[2], packet[3]]);
                if hidden.lock().unwrap().remove(&seq) {
                    packet[8] = 0; // present
                    packet[9] = 0; // major opcode
                    packet[10] = 0; // first event
                    packet[11] = 0; // first error
                }
            }
            client.write_all(&packet)?;
        }
    })();
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    result
}
