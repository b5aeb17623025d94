//! Real SIP peers for end-to-end tests (baresip, SIPp, Kamailio on 127.0.0.1).
