//! A private X server (Xvfb on a free display) and `xclip` owners of its CLIPBOARD, for the
//! wizard's last step. Missing tools fail the test (scripts/test installs them).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct X11 {
    xvfb: Child,
    display: String,
    owners: Vec<Child>,
}

impl X11 {
    pub fn start() -> X11 {
        let mut xvfb = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-noreset",
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "640x480x24",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb must be installed (scripts/test installs it)");
        let mut line = String::new();
        // Xvfb writes its display number once it accepts connections.
        BufReader::new(xvfb.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let number: u32 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("Xvfb reported no display number: {line:?}"));
        X11 {
            xvfb,
            display: format!(":{number}"),
            owners: Vec::new(),
        }
    }

    /// ":N".
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Puts `text` on the CLIPBOARD (a new xclip owner, as a fresh copy in an application) and
    /// waits until it is served.
    pub fn copy(&mut self, text: &str) {
        let mut xclip = Command::new("xclip")
            .args(["-quiet", "-selection", "clipboard", "-i"])
            .env("DISPLAY", &self.display)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("xclip must be installed (scripts/test installs it)");
        xclip
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        self.owners.push(xclip);
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("xclip")
                .args(["-o", "-selection", "clipboard"])
                .env("DISPLAY", &self.display)
                .stderr(Stdio::null())
                .output()
                .unwrap();
            if out.status.success() && out.stdout == text.as_bytes() {
                return;
            }
            assert!(
                Instant::now() < until,
                "xclip did not come to own the CLIPBOARD with {text:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for X11 {
    fn drop(&mut self) {
        for owner in &mut self.owners {
            let _ = owner.kill();
            let _ = owner.wait();
        }
        let _ = self.xvfb.kill();
        let _ = self.xvfb.wait();
    }
}
