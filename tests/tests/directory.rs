//! The contact directory through the real binary: `cti-host contacts
//! import | list | find`.

use cti_e2e::{run_cli, stderr, stdout, Scratch};
use serde_json::Value;

/// Good rows and malformed ones (lines 4 to 8 are bad).
const CSV: &str = "\
id,name,phone,account,email
1,Alice Smith,+1 (425) 555-0100,A-100,alice@example.com
2,\"Jones, Bob\",425.555.0199,A-200,
3,Too Few,+14255550111
4,No Phone,,A-400,
5,Bad \"Quote,+14255550122,A-500,
1,Alice Twice,+14255550133,A-100,
,No Id,+14255550144,A-700,
6,\"Carol
Multi-line\",sip:Carol@Example.com;transport=tcp,A-600,carol@example.com
7,Dave,0044 (0)20 7946 0000,A-800,
";

fn import(s: &Scratch) -> (String, std::path::PathBuf) {
    let csv = s.write("contacts.csv", CSV);
    let db = s.path("data/contacts.db");
    let o = run_cli(&[
        "contacts",
        "import",
        csv.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--country-code",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    (stdout(&o), db)
}

fn json(args: &[&str]) -> Value {
    let o = run_cli(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

fn ids(v: &Value) -> Vec<&str> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect()
}

#[test]
fn import_reports_bad_lines_and_keeps_good_rows() {
    let s = Scratch::new();
    let (out, db) = import(&s);
    let csv = s.path("contacts.csv").display().to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "imported 4 contacts; skipped 5 rows", "{out}");
    let expect = [
        (4, "expected 5 fields, found 3"),
        (5, "contact \"4\": empty phone"),
        (6, "bad quoting"),
        (7, "duplicate id \"1\" (first on line 2)"),
        (8, "empty id"),
    ];
    assert_eq!(lines.len(), 1 + expect.len(), "{out}");
    for (got, (line, reason)) in lines[1..].iter().zip(expect) {
        let prefix = format!("{csv}:{line}: ");
        assert!(
            got.starts_with(&prefix) && got.contains(reason),
            "want {prefix}…{reason}…, got {got}"
        );
    }

    let db = db.to_str().unwrap();
    let list = json(&["contacts", "list", "--db", db, "--json"]);
    assert_eq!(ids(&list), ["1", "2", "6", "7"]);
    let alice = &list[0];
    assert_eq!(alice["name"], "Alice Smith");
    assert_eq!(alice["phone"], "+14255550100");
    assert_eq!(alice["fields"]["account"], "A-100");
    assert_eq!(alice["fields"]["email"], "alice@example.com");
    assert_eq!(list[1]["name"], "Jones, Bob");
    assert_eq!(list[1]["phone"], "+14255550199");
    assert_eq!(list[2]["name"], "Carol\nMulti-line");
    assert_eq!(list[2]["phone"], "carol@example.com");
    assert_eq!(list[3]["phone"], "+442079460000");

    // The text listing: one line per contact, then the count.
    let o = run_cli(&["contacts", "list", "--db", db, "--limit", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[0].starts_with("1  Alice Smith") && rows[0].contains("+14255550100"),
        "{text}"
    );
    assert_eq!(rows[2], "2 of 4 contacts");

    // Importing again updates by id: still four contacts.
    let o = run_cli(&[
        "contacts",
        "import",
        s.path("contacts.csv").to_str().unwrap(),
        "--db",
        db,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        ids(&json(&["contacts", "list", "--db", db, "--json"])).len(),
        4
    );
}

#[test]
fn every_form_of_a_number_finds_the_same_contact() {
    let s = Scratch::new();
    let (_, db) = import(&s);
    let db = db.to_str().unwrap();
    for number in [
        "+1 (425) 555-0100",
        "14255550100",
        "001 425 555 0100",
        "(425) 555-0100",
        "sip:+14255550100@pbx.example.com;user=phone",
        "tel:+1-425-555-0100",
    ] {
        let found = json(&["contacts", "find", number, "--db", db, "--json"]);
        assert_eq!(ids(&found), ["1"], "{number}");
    }
    let o = run_cli(&["contacts", "find", "14255550100", "--db", db]);
    let text = stdout(&o);
    assert!(
        text.starts_with("+14255550100: 1 contact\n1  Alice Smith"),
        "{text}"
    );

    // Addresses: a JID with a resource, case ignored.
    let found = json(&[
        "contacts",
        "find",
        "Carol@example.COM/phone",
        "--db",
        db,
        "--json",
    ]);
    assert_eq!(ids(&found), ["6"]);
    // By field.
    let found = json(&[
        "contacts", "find", "a-200", "--field", "Account", "--db", db, "--json",
    ]);
    assert_eq!(ids(&found), ["2"]);
    // No match is not an error.
    let o = run_cli(&["contacts", "find", "+1 999 555 0000", "--db", db]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "+19995550000: no contact\n");
}

#[test]
fn corrupt_database_is_a_clear_error() {
    let s = Scratch::new();
    let db = s.write("contacts.db", &"not an SQLite file\n".repeat(300));
    let csv = s.write("c.csv", "id,name,phone\n1,A,+14255550100\n");
    let want = format!(
        "{}: not a contact directory: file is not a database",
        db.display()
    );
    for args in [
        vec!["contacts", "list", "--db", db.to_str().unwrap()],
        vec!["contacts", "find", "123", "--db", db.to_str().unwrap()],
        vec![
            "contacts",
            "import",
            csv.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ],
    ] {
        let o = run_cli(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&o).trim_end(), want, "{args:?}");
        assert!(!stderr(&o).contains("panicked"));
    }
    // The file is left as it was.
    assert_eq!(
        std::fs::read_to_string(&db).unwrap(),
        "not an SQLite file\n".repeat(300)
    );
}

#[test]
fn unreadable_csv_or_missing_header_exits_2() {
    let s = Scratch::new();
    let db = s.path("contacts.db");
    let db = db.to_str().unwrap();
    let missing = s.path("nope.csv");
    let o = run_cli(&["contacts", "import", missing.to_str().unwrap(), "--db", db]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with(&format!("{}: cannot read", missing.display())),
        "{}",
        stderr(&o)
    );
    assert!(!s.path("contacts.db").exists(), "no directory left behind");

    let nohdr = s.write("nohdr.csv", "1,Alice,+14255550100\n");
    let o = run_cli(&["contacts", "import", nohdr.to_str().unwrap(), "--db", db]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("nohdr.csv:1: header must name the columns id, name and phone"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn neither_db_nor_manifest_is_a_usage_error() {
    let o = run_cli(&["contacts", "list"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--db"), "{}", stderr(&o));
}

#[test]
fn manifest_names_the_directory() {
    let s = Scratch::new();
    let csv = s.write("contacts.csv", CSV);
    let manifest = s.manifest(
        "desktop.toml",
        "[directory]\npath = \"data/contacts.db\"\ndefault_country_code = \"1\"\n",
    );
    let m = manifest.to_str().unwrap();
    let o = run_cli(&["contacts", "import", csv.to_str().unwrap(), "--manifest", m]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(s.path("data/contacts.db").exists());
    let found = json(&[
        "contacts",
        "find",
        "(425) 555-0100",
        "--manifest",
        m,
        "--json",
    ]);
    assert_eq!(ids(&found), ["1"]);

    // A manifest without [directory] says so.
    let bare = s.manifest("bare.toml", "[desktop]\nagent_id = \"a1\"\n");
    let o = run_cli(&["contacts", "list", "--manifest", bare.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("bare.toml: no [directory] section"),
        "{}",
        stderr(&o)
    );
}
