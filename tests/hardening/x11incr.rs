//! Two X11 CLIPBOARD owners in the test process (x11rb, one thread), for what xclip does only
//! by chance: an *old* owner streaming a large text by INCR (the X11 protocol for transfers
//! too large for one property) into a requestor's property, chunk by chunk as the requestor
//! deletes the property, and a *new* owner that took the CLIPBOARD over meanwhile.
//!
//! The old owner writes each chunk when it sees the property deleted, at once (events in
//! order, as a single client does) — except once: the first chunk owed after the new owner
//! took the CLIPBOARD lands right after the new owner's answer to a text request. That is an
//! interleaving two independent processes (xclip and xclip) produce now and then; here it is
//! made certain, once.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ChangeWindowAttributesAux, ConnectionExt as _, CreateWindowAux, EventMask,
    Property, SELECTION_NOTIFY_EVENT, SelectionNotifyEvent, SelectionRequestEvent, Window,
    WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::{COPY_DEPTH_FROM_PARENT, CURRENT_TIME};

/// What the owners were asked, and did.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Text requests the old owner answered with INCR.
    pub incr_started: usize,
    /// Chunks the old owner wrote.
    pub chunks_written: usize,
    /// Chunks the old owner wrote right after the new owner's answer.
    pub late_chunks: usize,
    /// Text requests the new owner answered.
    pub new_text_served: usize,
    /// Why the owner thread ended, if it did.
    pub ended: Option<String>,
}

enum Cmd {
    /// The old owner takes the CLIPBOARD.
    Old,
    /// The new owner takes the CLIPBOARD.
    New,
    Stop,
}

pub struct IncrOwners {
    tx: mpsc::Sender<Cmd>,
    counts: Arc<Mutex<Counts>>,
    thread: Option<JoinHandle<()>>,
}

struct Transfer {
    requestor: Window,
    property: Atom,
    next: usize,
    /// Deletions seen while the new owner holds the CLIPBOARD: chunks owed, written late.
    owed: usize,
}

impl IncrOwners {
    /// Owners on `display` (":N"): the old one streams `chunks` (each a UTF-8 piece of its
    /// large text), the new one serves `new_text`. Nobody owns the CLIPBOARD yet.
    pub fn start(display: &str, chunks: Vec<String>, new_text: &str) -> IncrOwners {
        let (conn, screen) = x11rb::connect(Some(display)).expect("connect to the X server");
        let counts = Arc::new(Mutex::new(Counts::default()));
        let (tx, rx) = mpsc::channel();
        let (c, text) = (counts.clone(), new_text.to_string());
        let thread = std::thread::spawn(move || {
            let why = serve(&conn, screen, &chunks, &text, &rx, &c)
                .err()
                .unwrap_or_else(|| "stopped".into());
            c.lock().unwrap_or_else(|e| e.into_inner()).ended = Some(why);
        });
        IncrOwners {
            tx,
            counts,
            thread: Some(thread),
        }
    }

    pub fn old_takes_the_clipboard(&self) {
        let _ = self.tx.send(Cmd::Old);
    }

    pub fn new_takes_the_clipboard(&self) {
        let _ = self.tx.send(Cmd::New);
    }

    pub fn counts(&self) -> Counts {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for IncrOwners {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    conn: &RustConnection,
    screen: usize,
    chunks: &[String],
    new_text: &str,
    rx: &mpsc::Receiver<Cmd>,
    counts: &Mutex<Counts>,
) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| format!("X: {e}");
    let intern = |name: &str| -> Result<Atom, String> {
        Ok(conn
            .intern_atom(false, name.as_bytes())
            .map_err(|x| e(&x))?
            .reply()
            .map_err(|x| e(&x))?
            .atom)
    };
    let clipboard = intern("CLIPBOARD")?;
    let targets = intern("TARGETS")?;
    let utf8 = intern("UTF8_STRING")?;
    let incr = intern("INCR")?;
    let root = conn.setup().roots.get(screen).ok_or("no screen")?;
    let (root_window, visual) = (root.root, root.root_visual);
    let make_window = || -> Result<Window, String> {
        let w = conn.generate_id().map_err(|x| e(&x))?;
        conn.create_window(
            COPY_DEPTH_FROM_PARENT,
            w,
            root_window,
            0,
            0,
            1,
            1,
            0,
            WindowClass::INPUT_OUTPUT,
            visual,
            &CreateWindowAux::new(),
        )
        .map_err(|x| e(&x))?;
        Ok(w)
    };
    let old = make_window()?;
    let new = make_window()?;
    let total: usize = chunks.iter().map(String::len).sum();
    let mut transfer: Option<Transfer> = None;
    let mut new_owns = false;
    let mut late_done = false;
    let lock = || counts.lock().unwrap_or_else(|p| p.into_inner());
    let notify = |req: &SelectionRequestEvent, property: Atom| -> Result<(), String> {
        let ev = SelectionNotifyEvent {
            response_type: SELECTION_NOTIFY_EVENT,
            sequence: 0,
            time: req.time,
            requestor: req.requestor,
            selection: req.selection,
            target: req.target,
            property,
        };
        conn.send_event(false, req.requestor, EventMask::NO_EVENT, ev)
            .map_err(|x| e(&x))?;
        Ok(())
    };
    // Writes the old owner's next chunk (an empty one ends the transfer).
    let write_chunk = |t: &mut Transfer| -> Result<bool, String> {
        let piece = chunks.get(t.next).map_or("", String::as_str);
        conn.change_property8(
            x11rb::protocol::xproto::PropMode::REPLACE,
            t.requestor,
            t.property,
            utf8,
            piece.as_bytes(),
        )
        .map_err(|x| e(&x))?;
        t.next += 1;
        lock().chunks_written += 1;
        Ok(t.next <= chunks.len())
    };
    loop {
        match rx.try_recv() {
            Ok(Cmd::Old) => {
                conn.set_selection_owner(old, clipboard, CURRENT_TIME)
                    .map_err(|x| e(&x))?;
                new_owns = false;
            }
            Ok(Cmd::New) => {
                conn.set_selection_owner(new, clipboard, CURRENT_TIME)
                    .map_err(|x| e(&x))?;
                new_owns = true;
            }
            Ok(Cmd::Stop) | Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
            Err(mpsc::TryRecvError::Empty) => {}
        }
        conn.flush().map_err(|x| e(&x))?;
        let mut busy = false;
        while let Some(event) = conn.poll_for_event().map_err(|x| e(&x))? {
            busy = true;
            match event {
                Event::PropertyNotify(p) if p.state == Property::DELETE => {
                    let Some(t) = transfer.as_mut() else { continue };
                    if p.window != t.requestor || p.atom != t.property {
                        continue;
                    }
                    if new_owns && !late_done {
                        t.owed += 1;
                    } else if !write_chunk(t)? {
                        transfer = None;
                    }
                }
                Event::SelectionRequest(req) => {
                    let property = if req.property == u32::from(AtomEnum::NONE) {
                        req.target
                    } else {
                        req.property
                    };
                    if req.target == targets {
                        conn.change_property32(
                            x11rb::protocol::xproto::PropMode::REPLACE,
                            req.requestor,
                            property,
                            AtomEnum::ATOM,
                            &[targets, utf8],
                        )
                        .map_err(|x| e(&x))?;
                        notify(&req, property)?;
                    } else if req.target == utf8 && req.owner == old {
                        // Too large for one property: INCR, then chunks as it is deleted.
                        conn.change_window_attributes(
                            req.requestor,
                            &ChangeWindowAttributesAux::new()
                                .event_mask(EventMask::PROPERTY_CHANGE),
                        )
                        .map_err(|x| e(&x))?;
                        conn.change_property32(
                            x11rb::protocol::xproto::PropMode::REPLACE,
                            req.requestor,
                            property,
                            incr,
                            &[u32::try_from(total).unwrap_or(u32::MAX)],
                        )
                        .map_err(|x| e(&x))?;
                        notify(&req, property)?;
                        transfer = Some(Transfer {
                            requestor: req.requestor,
                            property,
                            next: 0,
                            owed: 0,
                        });
                        lock().incr_started += 1;
                    } else if req.target == utf8 && req.owner == new {
                        conn.change_property8(
                            x11rb::protocol::xproto::PropMode::REPLACE,
                            req.requestor,
                            property,
                            utf8,
                            new_text.as_bytes(),
                        )
                        .map_err(|x| e(&x))?;
                        notify(&req, property)?;
                        lock().new_text_served += 1;
                        // The old owner, slower, catches up on a deletion it saw before.
                        if let Some(t) = transfer.as_mut()
                            && t.owed > 0
                            && !late_done
                        {
                            t.owed = 0;
                            late_done = true;
                            lock().late_chunks += 1;
                            if !write_chunk(t)? {
                                transfer = None;
                            }
                        }
                    } else {
                        notify(&req, AtomEnum::NONE.into())?;
                    }
                }
                _ => {}
            }
        }
        conn.flush().map_err(|x| e(&x))?;
        if !busy {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
