//! An X11 CLIPBOARD owner in the test process (x11rb, on a thread of its own), for what xclip
//! cannot do: offer extra targets (KDE's password-manager hint), switch texts at exact times,
//! and count what was asked of it, so a test knows when the daemon has read an offer.
//!
//! Each offer is made from a new window, as a fresh copy in an application would be: the
//! selection owner changes every time, whatever the daemon compares. Besides text, an offer
//! can be an owner with no text target, one that refuses to list its targets, one that never
//! answers, or one that loses the CLIPBOARD to another between a reader's TARGETS and text
//! requests (tests/clipboard_contract.rs holds the fake clipboard to these).

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ConnectionExt as _, CreateWindowAux, EventMask, PropMode,
    SELECTION_NOTIFY_EVENT, SelectionNotifyEvent, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::{COPY_DEPTH_FROM_PARENT, CURRENT_TIME};

/// KDE's hint that the clipboard holds a secret (KeePassXC, KWallet, ... set it).
pub const KDE_PASSWORD_HINT: &str = "x-kde-passwordManagerHint";

/// What a requestor asked of one offer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub targets: usize,
    pub text: usize,
    pub hint: usize,
}

/// What an offer's owner does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Lists TARGETS, UTF8_STRING (and the hint, if concealed) and serves the text.
    Text,
    /// Lists TARGETS and image/png only.
    NoText,
    /// Refuses the TARGETS request.
    Unlisted,
    /// Never answers any request.
    Hung,
    /// On the first TARGETS request, before answering it, another window takes the CLIPBOARD
    /// with this text (concealed or not); the reader's text request then reaches that one.
    TakeOver(String, bool),
}

enum Cmd {
    Offer {
        text: String,
        concealed: bool,
        kind: Kind,
        reply: mpsc::Sender<Result<u64, String>>,
    },
    /// Gives the CLIPBOARD up: nobody owns it.
    Clear(mpsc::Sender<Result<u64, String>>),
    Stop,
}

#[derive(Default)]
struct Shared {
    served: HashMap<u64, Served>,
    /// Why the owner thread ended, if it did.
    ended: Option<String>,
}

/// The in-process CLIPBOARD owner. Stops (and gives the selection up) when dropped.
pub struct ClipboardOwner {
    tx: mpsc::Sender<Cmd>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

struct Offer {
    id: u64,
    text: String,
    concealed: bool,
    kind: Kind,
}

struct Atoms {
    clipboard: Atom,
    targets: Atom,
    utf8: Atom,
    hint: Atom,
    png: Atom,
}

impl ClipboardOwner {
    /// Connects to `display` (":N"); offers nothing until [`offer`](Self::offer).
    pub fn start(display: &str) -> Result<ClipboardOwner, String> {
        let (conn, screen_num) =
            x11rb::connect(Some(display)).map_err(|e| format!("cannot open {display}: {e}"))?;
        let intern = |name: &str| -> Result<Atom, String> {
            Ok(conn
                .intern_atom(false, name.as_bytes())
                .map_err(|e| e.to_string())?
                .reply()
                .map_err(|e| e.to_string())?
                .atom)
        };
        let atoms = Atoms {
            clipboard: intern("CLIPBOARD")?,
            targets: intern("TARGETS")?,
            utf8: intern("UTF8_STRING")?,
            hint: intern(KDE_PASSWORD_HINT)?,
            png: intern("image/png")?,
        };
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (tx, rx) = mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::spawn(move || {
            let why = serve(&conn, screen_num, &atoms, &rx, &thread_shared)
                .err()
                .unwrap_or_else(|| "stopped".into());
            lock(&thread_shared).ended = Some(why);
        });
        Ok(ClipboardOwner {
            tx,
            shared,
            thread: Some(thread),
        })
    }

    /// Takes the CLIPBOARD with `text` (targets TARGETS and UTF8_STRING); returns the offer's id.
    pub fn offer(&self, text: &str) -> u64 {
        self.offer_with(text, false)
    }

    /// Takes the CLIPBOARD with `text`, also listing KDE's password-manager hint in TARGETS
    /// (its value is "secret", as KeePassXC sets it).
    pub fn offer_concealed(&self, text: &str) -> u64 {
        self.offer_with(text, true)
    }

    /// Takes the CLIPBOARD offering no text: TARGETS lists only TARGETS and image/png.
    pub fn offer_no_text(&self) -> u64 {
        self.offer_kind("", false, Kind::NoText)
    }

    /// Takes the CLIPBOARD and refuses to list its targets.
    pub fn offer_unlisted(&self) -> u64 {
        self.offer_kind("", false, Kind::Unlisted)
    }

    /// Takes the CLIPBOARD and never answers a request for it.
    pub fn offer_hung(&self) -> u64 {
        self.offer_kind("", false, Kind::Hung)
    }

    /// Takes the CLIPBOARD with `first`; at the first TARGETS request another window takes it
    /// over with `then` (with the password-manager hint if `then_concealed`) before the
    /// TARGETS answer goes out, so the reader's text request reaches the new owner.
    pub fn offer_then_take_over(&self, first: &str, then: &str, then_concealed: bool) -> u64 {
        self.offer_kind(
            first,
            false,
            Kind::TakeOver(then.to_owned(), then_concealed),
        )
    }

    /// Gives the CLIPBOARD up, so that nobody owns it.
    pub fn clear(&self) {
        let (reply, rx) = mpsc::channel();
        self.request(Cmd::Clear(reply), rx);
    }

    fn offer_with(&self, text: &str, concealed: bool) -> u64 {
        self.offer_kind(text, concealed, Kind::Text)
    }

    fn offer_kind(&self, text: &str, concealed: bool, kind: Kind) -> u64 {
        let (reply, rx) = mpsc::channel();
        let cmd = Cmd::Offer {
            text: text.to_owned(),
            concealed,
            kind,
            reply,
        };
        self.request(cmd, rx)
    }

    fn request(&self, cmd: Cmd, rx: mpsc::Receiver<Result<u64, String>>) -> u64 {
        let sent = self.tx.send(cmd);
        let answer = match sent {
            Ok(()) => rx
                .recv_timeout(Duration::from_secs(5))
                .map_err(|e| e.to_string())
                .and_then(|r| r),
            Err(_) => Err("owner thread is gone".into()),
        };
        match answer {
            Ok(id) => id,
            Err(e) => panic!(
                "clipboard owner could not take the CLIPBOARD: {e} (thread: {:?})",
                lock(&self.shared).ended
            ),
        }
    }

    /// What requestors have asked of offer `id` so far.
    pub fn served(&self, id: u64) -> Served {
        lock(&self.shared)
            .served
            .get(&id)
            .copied()
            .unwrap_or_default()
    }

    /// Why the owner thread ended (for example the X server went away), if it has.
    pub fn ended(&self) -> Option<String> {
        lock(&self.shared).ended.clone()
    }
}

impl Drop for ClipboardOwner {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn serve(
    conn: &RustConnection,
    screen_num: usize,
    atoms: &Atoms,
    rx: &mpsc::Receiver<Cmd>,
    shared: &Mutex<Shared>,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("X connection failed: {e}");
    let screen = conn.setup().roots.get(screen_num).ok_or("no X screen")?;
    let (root, visual) = (screen.root, screen.root_visual);
    let mut offers: HashMap<Window, Offer> = HashMap::new();
    let mut next_id = 0u64;
    loop {
        match rx.try_recv() {
            Ok(Cmd::Offer {
                text,
                concealed,
                kind,
                reply,
            }) => {
                let result = take_clipboard(conn, root, visual, atoms).map(|window| {
                    next_id += 1;
                    lock(shared).served.insert(next_id, Served::default());
                    offers.insert(
                        window,
                        Offer {
                            id: next_id,
                            text,
                            concealed,
                            kind,
                        },
                    );
                    next_id
                });
                let failed = result.as_ref().err().cloned();
                let _ = reply.send(result);
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            Ok(Cmd::Clear(reply)) => {
                let result = (|| -> Result<u64, String> {
                    conn.set_selection_owner(AtomEnum::NONE, atoms.clipboard, CURRENT_TIME)
                        .map_err(|e| err(&e))?;
                    let owner = conn
                        .get_selection_owner(atoms.clipboard)
                        .map_err(|e| err(&e))?
                        .reply()
                        .map_err(|e| err(&e))?
                        .owner;
                    if owner != u32::from(AtomEnum::NONE) {
                        return Err(format!("the CLIPBOARD is still owned by {owner:#x}"));
                    }
                    Ok(0)
                })();
                let failed = result.as_ref().err().cloned();
                let _ = reply.send(result);
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            Ok(Cmd::Stop) | Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
            Err(mpsc::TryRecvError::Empty) => {}
        }
        let mut busy = false;
        while let Some(event) = conn.poll_for_event().map_err(|e| err(&e))? {
            busy = true;
            if let Event::SelectionRequest(req) = event {
                let property = if req.property == u32::from(AtomEnum::NONE) {
                    req.target
                } else {
                    req.property
                };
                if offers.get(&req.owner).is_some_and(|o| o.kind == Kind::Hung) {
                    continue;
                }
                if req.target == atoms.targets
                    && let Some(Kind::TakeOver(then, then_concealed)) =
                        offers.get(&req.owner).map(|o| o.kind.clone())
                {
                    // Taken over before the TARGETS answer leaves, so the reader's next
                    // request is certain to reach the new owner.
                    let window = take_clipboard(conn, root, visual, atoms)?;
                    next_id += 1;
                    lock(shared).served.insert(next_id, Served::default());
                    offers.insert(
                        window,
                        Offer {
                            id: next_id,
                            text: then,
                            concealed: then_concealed,
                            kind: Kind::Text,
                        },
                    );
                    if let Some(o) = offers.get_mut(&req.owner) {
                        o.kind = Kind::Text;
                    }
                }
                let answered = match offers.get(&req.owner) {
                    Some(offer) if offer.kind == Kind::Unlisted => false,
                    Some(offer) if req.target == atoms.targets => {
                        let mut list = if offer.kind == Kind::NoText {
                            vec![atoms.targets, atoms.png]
                        } else {
                            vec![atoms.targets, atoms.utf8]
                        };
                        if offer.concealed {
                            list.push(atoms.hint);
                        }
                        conn.change_property32(
                            PropMode::REPLACE,
                            req.requestor,
                            property,
                            AtomEnum::ATOM,
                            &list,
                        )
                        .map_err(|e| err(&e))?;
                        lock(shared).served.entry(offer.id).or_default().targets += 1;
                        true
                    }
                    Some(offer) if req.target == atoms.utf8 && offer.kind == Kind::Text => {
                        conn.change_property8(
                            PropMode::REPLACE,
                            req.requestor,
                            property,
                            atoms.utf8,
                            offer.text.as_bytes(),
                        )
                        .map_err(|e| err(&e))?;
                        lock(shared).served.entry(offer.id).or_default().text += 1;
                        true
                    }
                    Some(offer) if req.target == atoms.hint && offer.concealed => {
                        conn.change_property8(
                            PropMode::REPLACE,
                            req.requestor,
                            property,
                            atoms.utf8,
                            b"secret",
                        )
                        .map_err(|e| err(&e))?;
                        lock(shared).served.entry(offer.id).or_default().hint += 1;
                        true
                    }
                    _ => false,
                };
                let notify = SelectionNotifyEvent {
                    response_type: SELECTION_NOTIFY_EVENT,
                    sequence: 0,
                    time: req.time,
                    requestor: req.requestor,
                    selection: req.selection,
                    target: req.target,
                    property: if answered {
                        property
                    } else {
                        AtomEnum::NONE.into()
                    },
                };
                conn.send_event(false, req.requestor, EventMask::NO_EVENT, notify)
                    .map_err(|e| err(&e))?;
            }
        }
        conn.flush().map_err(|e| err(&e))?;
        if !busy {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Takes the CLIPBOARD from a new window of ours; returns the window once the server says it
/// owns the selection.
fn take_clipboard(
    conn: &RustConnection,
    root: Window,
    visual: u32,
    atoms: &Atoms,
) -> Result<Window, String> {
    let err = |e: &dyn std::fmt::Display| format!("X connection failed: {e}");
    let window = conn.generate_id().map_err(|e| err(&e))?;
    conn.create_window(
        COPY_DEPTH_FROM_PARENT,
        window,
        root,
        0,
        0,
        1,
        1,
        0,
        WindowClass::INPUT_OUTPUT,
        visual,
        &CreateWindowAux::new(),
    )
    .map_err(|e| err(&e))?;
    conn.set_selection_owner(window, atoms.clipboard, CURRENT_TIME)
        .map_err(|e| err(&e))?;
    let owner = conn
        .get_selection_owner(atoms.clipboard)
        .map_err(|e| err(&e))?
        .reply()
        .map_err(|e| err(&e))?
        .owner;
    if owner != window {
        return Err(format!(
            "SetSelectionOwner did not take: owner is {owner:#x}"
        ));
    }
    Ok(window)
}
