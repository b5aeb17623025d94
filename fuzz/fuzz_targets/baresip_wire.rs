//! The baresip connector's wire decoders: the netstring framer fed in
//! arbitrary chunks, the JSON message parser on every frame, and the
//! parsers of command replies (`listcalls`, `callstat`, mute state, URIs).
#![no_main]

use baresip_connector::{
    encode_netstring, parse_callstat, parse_listcalls, parse_message, parse_mute, user_of, Decoder,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: the chunk size the stream arrives in.
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut d = Decoder::new();
    'feed: for part in rest.chunks(chunk) {
        d.push(part);
        loop {
            match d.next_frame() {
                Ok(Some(frame)) => {
                    let _ = parse_message(&frame);
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    // What is encoded decodes to itself.
    let mut d = Decoder::new();
    d.push(&encode_netstring(rest));
    if rest.len() <= baresip_connector::MAX_FRAME {
        assert_eq!(d.next_frame().ok().flatten().as_deref(), Some(rest));
    }
    if let Ok(text) = std::str::from_utf8(rest) {
        let _ = parse_listcalls(text);
        let _ = parse_callstat(text);
        let _ = parse_mute(text);
        let _ = user_of(text);
    }
});
