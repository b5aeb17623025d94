//! Parsing the agent's key lines.
//!
//! A line holds one or more keys separated by spaces (`a`, `a2 r`,
//! `d 5551234`, `n Lunch`). Call keys take an optional call number glued
//! to them (`a2` = answer call 2). `s`/`sN` takes the rest of the line as
//! a chat message (`s2 Hello, how can I help?`).

use std::fmt;

/// One key the agent typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `a[N]`: answer the ringing call (or call N).
    Answer(Option<usize>),
    /// `x[N]`: reject the ringing call (or call N).
    Reject(Option<usize>),
    /// `h[N]`: hang up the current call (or call N).
    Hangup(Option<usize>),
    /// `o[N]`: hold or retrieve the current call (or call N).
    HoldToggle(Option<usize>),
    /// `m[N]`: mute or unmute the current call (or call N).
    MuteToggle(Option<usize>),
    /// `w[N]`: end the wrap-up of the call in wrap-up (or call N).
    EndWrapUp(Option<usize>),
    /// `d <number>`: dial.
    Dial(String),
    /// `t[N] <number>`: blind transfer the current call (or call N).
    Transfer(Option<usize>, String),
    /// `s[N] <text>`: send the rest of the line as a chat message on the
    /// current chat (or call N).
    Send(Option<usize>, String),
    /// `r`: Ready.
    Ready,
    /// `n [reason]`: NotReady, with a reason code or the first configured one.
    NotReady(Option<String>),
    /// `l`: LoggedOut.
    LoggedOut,
    /// `?`: help.
    Help,
}

/// Why a line was refused (nothing of it is carried out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses one line into keys; an empty line gives no key.
///
/// # Errors
/// An unknown key, a bad call number or a missing number after `d`/`t`.
pub fn parse_line(line: &str) -> Result<Vec<Key>, KeyError> {
    let mut keys = Vec::new();
    let mut tokens = line.split_whitespace().peekable();
    while let Some(tok) = tokens.next() {
        if let Some(rest) = tok.strip_prefix(['s', 'S']) {
            if rest.bytes().all(|b| b.is_ascii_digit()) {
                let call = call_number(tok, rest)?;
                // The message is the rest of the line, spaces kept.
                let at = tok.as_ptr() as usize - line.as_ptr() as usize + tok.len();
                let text = line[at..].trim();
                if text.is_empty() {
                    return Err(KeyError("s needs a message: s <text>".into()));
                }
                keys.push(Key::Send(call, text.to_owned()));
                break;
            }
        }
        let mut chars = tok.chars();
        let Some(first) = chars.next() else { continue };
        let rest = chars.as_str();
        if tok.eq_ignore_ascii_case("help") {
            keys.push(Key::Help);
            continue;
        }
        let key = match first.to_ascii_lowercase() {
            'a' => Key::Answer(call_number(tok, rest)?),
            'x' => Key::Reject(call_number(tok, rest)?),
            'h' => Key::Hangup(call_number(tok, rest)?),
            'o' => Key::HoldToggle(call_number(tok, rest)?),
            'm' => Key::MuteToggle(call_number(tok, rest)?),
            'w' => Key::EndWrapUp(call_number(tok, rest)?),
            'd' => {
                let number = if rest.is_empty() {
                    tokens
                        .next()
                        .ok_or_else(|| KeyError("d needs a number: d <number>".into()))?
                } else {
                    rest
                };
                Key::Dial(number.to_owned())
            }
            't' => {
                let call = call_number(tok, rest)?;
                let number = tokens
                    .next()
                    .ok_or_else(|| KeyError("t needs a number: t <number>".into()))?;
                Key::Transfer(call, number.to_owned())
            }
            'r' if rest.is_empty() => Key::Ready,
            'l' if rest.is_empty() => Key::LoggedOut,
            '?' if rest.is_empty() => Key::Help,
            'n' if rest.is_empty() => {
                // The next word is a reason unless it is itself a key.
                let reason = tokens
                    .next_if(|next| parse_line(next).is_err())
                    .map(str::to_owned);
                Key::NotReady(reason)
            }
            _ => return Err(unknown(tok)),
        };
        keys.push(key);
    }
    Ok(keys)
}

/// The call number glued to a call key (`a2` → 2).
fn call_number(tok: &str, rest: &str) -> Result<Option<usize>, KeyError> {
    if rest.is_empty() {
        return Ok(None);
    }
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unknown(tok));
    }
    match rest.parse::<usize>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(KeyError(format!("no call number {rest}"))),
    }
}

fn unknown(tok: &str) -> KeyError {
    KeyError(format!("unknown key '{tok}' (? for help)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(line: &str) -> Vec<Key> {
        parse_line(line).unwrap()
    }

    #[test]
    fn single_keys() {
        assert_eq!(keys(""), vec![]);
        assert_eq!(keys("   \n"), vec![]);
        assert_eq!(keys("a"), vec![Key::Answer(None)]);
        assert_eq!(keys("A2"), vec![Key::Answer(Some(2))]);
        assert_eq!(keys("x"), vec![Key::Reject(None)]);
        assert_eq!(keys("h3"), vec![Key::Hangup(Some(3))]);
        assert_eq!(keys("o"), vec![Key::HoldToggle(None)]);
        assert_eq!(keys("m1"), vec![Key::MuteToggle(Some(1))]);
        assert_eq!(keys("w"), vec![Key::EndWrapUp(None)]);
        assert_eq!(keys("r"), vec![Key::Ready]);
        assert_eq!(keys("l"), vec![Key::LoggedOut]);
        assert_eq!(keys("?"), vec![Key::Help]);
        assert_eq!(keys("help"), vec![Key::Help]);
    }

    #[test]
    fn keys_with_arguments() {
        assert_eq!(keys("d 5551234"), vec![Key::Dial("5551234".into())]);
        assert_eq!(keys("d5551234"), vec![Key::Dial("5551234".into())]);
        assert_eq!(
            keys("d sip:bob@example.com"),
            vec![Key::Dial("sip:bob@example.com".into())]
        );
        assert_eq!(keys("t 2002"), vec![Key::Transfer(None, "2002".into())]);
        assert_eq!(keys("t2 2002"), vec![Key::Transfer(Some(2), "2002".into())]);
        assert_eq!(keys("n"), vec![Key::NotReady(None)]);
        assert_eq!(keys("n Lunch"), vec![Key::NotReady(Some("Lunch".into()))]);
        // A word that starts like a key but is not one is a reason.
        assert_eq!(keys("n Away"), vec![Key::NotReady(Some("Away".into()))]);
    }

    #[test]
    fn send_takes_the_rest_of_the_line() {
        assert_eq!(
            keys("s Hello,  how can I help?"),
            vec![Key::Send(None, "Hello,  how can I help?".into())]
        );
        assert_eq!(
            keys("a2 s2 hi r"),
            vec![Key::Answer(Some(2)), Key::Send(Some(2), "hi r".into())]
        );
        assert!(parse_line("s").is_err());
        assert!(parse_line("s3   ").is_err());
        assert!(parse_line("sx hello").is_err());
    }

    #[test]
    fn several_keys() {
        assert_eq!(keys("a r"), vec![Key::Answer(None), Key::Ready]);
        assert_eq!(
            keys("h2 d 100 n r"),
            vec![
                Key::Hangup(Some(2)),
                Key::Dial("100".into()),
                Key::NotReady(None),
                Key::Ready
            ]
        );
        assert_eq!(
            keys("n Break l"),
            vec![Key::NotReady(Some("Break".into())), Key::LoggedOut]
        );
    }

    #[test]
    fn errors() {
        assert!(parse_line("z").is_err());
        assert!(parse_line("answer").is_err());
        assert!(parse_line("a0").is_err());
        assert!(parse_line("a99999999999999999999999").is_err());
        assert!(parse_line("r2").is_err());
        assert!(parse_line("d").is_err());
        assert!(parse_line("t").is_err());
        assert!(parse_line("t2").is_err());
        // One bad key refuses the whole line.
        assert!(parse_line("a q").is_err());
    }
}
