//! The contact directory: contacts in an SQLite file, looked up by phone
//! number (normalised, see [`normalize`]) or by any other field.
//!
//! # Schema (version 1, `PRAGMA user_version`)
//! ```sql
//! -- PRAGMA application_id = 0x43544948 ('CTIH'): marks the file as ours.
//! CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
//! CREATE TABLE contacts (
//!     id TEXT PRIMARY KEY,          -- the CSV's id, upsert key
//!     name TEXT NOT NULL,
//!     phone TEXT NOT NULL,          -- normalised (`normalize`)
//!     phone_raw TEXT NOT NULL       -- as imported, to re-normalise
//! ) WITHOUT ROWID;
//! CREATE INDEX contacts_phone ON contacts (phone);
//! CREATE INDEX contacts_name ON contacts (name COLLATE NOCASE);
//! CREATE TABLE fields (
//!     contact_id TEXT NOT NULL,     -- contacts.id
//!     key TEXT NOT NULL COLLATE NOCASE,
//!     value TEXT NOT NULL COLLATE NOCASE,
//!     ord INTEGER NOT NULL,         -- column order in the CSV
//!     PRIMARY KEY (contact_id, key)
//! ) WITHOUT ROWID;
//! CREATE INDEX fields_key_value ON fields (key, value);
//! ```
//! `settings` holds the `default_country_code` the phone numbers were
//! normalised with; opening the file with another one re-normalises them.
//!
//! The file is in WAL mode, so the desktop can look contacts up while
//! `cti-host contacts import` writes.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use rusqlite::{params, Connection, OptionalExtension};

/// The schema version this code reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// `PRAGMA application_id` of a contact directory: "CTIH".
pub const APPLICATION_ID: i64 = 0x4354_4948;

/// Numbers with fewer digits than this (and no `+` or international
/// prefix) are extensions or short codes: kept as digits, no country code.
const MIN_NATIONAL_DIGITS: usize = 7;

/// Phone numbers and addresses in one comparable form.
///
/// - Phone numbers become E.164-style `+<country code><number>`: formatting
///   (spaces, `.`, `-`, `/`, parentheses) is dropped, and so is an extension
///   (`x123`, `ext. 123`, `;ext=123`) and the `(0)` of `+44 (0)20 …`. A
///   leading `+` or `00` (and `011` when the default country code is `1`)
///   starts an international number; a leading `0` is a national trunk
///   prefix, replaced by `+<default_country_code>`; a number that already
///   starts with the default country code and is long enough to hold a
///   national number after it gets only the `+`; any other number of at least
///   7 digits gets `+<default_country_code>` in front. Shorter numbers
///   (extensions, short codes) stay bare digits. With an empty
///   `default_country_code`, national numbers stay bare digits.
/// - `tel:`, `sip:` and `sips:` URIs (also inside `"Name" <…>`) give their
///   number, or for SIP the `user@host` address when the user part is not a
///   number; parameters, passwords and ports are dropped.
/// - Anything else (XMPP JIDs, e-mail addresses, names) is trimmed and
///   lower-cased, with an `xmpp:`/`mailto:` scheme and a JID's `/resource`
///   dropped: `Alice@Example.com/phone` → `alice@example.com`.
///
/// `+1 (425) 555-0100`, `14255550100`, `001 425 555 0100`,
/// `sip:+14255550100@host;user=phone` and (with default country code `1`)
/// `(425) 555-0100` all give `+14255550100`.
pub fn normalize(raw: &str, default_country_code: &str) -> String {
    let cc = default_country_code.trim().trim_start_matches('+');
    let mut s = raw.trim();
    // `"Alice" <sip:alice@example.com>;tag=x` → the part inside <>.
    if let (Some(open), Some(close)) = (s.find('<'), s.rfind('>')) {
        if open < close {
            s = s[open + 1..close].trim();
        }
    }
    let lower = s.to_ascii_lowercase();
    if let Some(rest) = strip_scheme(&lower, &["tel:"]) {
        let rest_orig = &s[s.len() - rest.len()..];
        let number = rest_orig.split(';').next().unwrap_or("");
        return phone_number(number, cc).unwrap_or_else(|| bare_address(number));
    }
    if let Some(rest) = strip_scheme(&lower, &["sips:", "sip:"]) {
        let rest_orig = &s[s.len() - rest.len()..];
        // sip:user;uparam=x:password@host:port;param=y?header=z
        let rest_orig = rest_orig.split(['?', '>']).next().unwrap_or("");
        let Some((userinfo, hostport)) = rest_orig.split_once('@') else {
            // No user part: the host is the address.
            return bare_address(rest_orig.split(';').next().unwrap_or(""));
        };
        let user = userinfo.split([':', ';']).next().unwrap_or("");
        if let Some(n) = phone_number(user, cc) {
            return n;
        }
        let host = hostport.split([';', ':']).next().unwrap_or("");
        return format!("{user}@{host}").trim().to_lowercase();
    }
    if let Some(n) = phone_number(s, cc) {
        return n;
    }
    let s =
        strip_scheme(&lower, &["xmpp:", "mailto:"]).map_or(s, |rest| &s[s.len() - rest.len()..]);
    bare_address(s)
}

/// `lower` without the first of `schemes` it starts with.
fn strip_scheme<'a>(lower: &'a str, schemes: &[&str]) -> Option<&'a str> {
    schemes.iter().find_map(|p| lower.strip_prefix(p))
}

/// A non-numeric address: trimmed, lower-cased, a JID's resource dropped;
/// empty when it has no letter or digit at all.
fn bare_address(s: &str) -> String {
    let s = s.trim();
    if !s.chars().any(char::is_alphanumeric) {
        return String::new();
    }
    let s = match s.find('@') {
        Some(at) => match s[at..].find('/') {
            Some(slash) => &s[..at + slash],
            None => s,
        },
        None => s,
    };
    s.to_lowercase()
}

/// The number in `s` as `+digits` (or bare digits, see [`normalize`]), or
/// `None` when `s` is not a phone number.
fn phone_number(s: &str, cc: &str) -> Option<String> {
    let s = strip_extension(s.trim());
    let (plus, body) = match s.strip_prefix('+') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let mut digits = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        // `+44 (0)20 …` / `0044 (0)20 …`: the (0) is the trunk prefix.
        if rest.starts_with("(0)") && (plus || digits.starts_with("00")) && !digits.is_empty() {
            rest = &rest[3..];
            continue;
        }
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '\t' | '.' | '-' | '/' | '(' | ')' | '\u{a0}' | '\u{2011}' | '\u{2013}' => {}
            _ => return None,
        }
        rest = &rest[c.len_utf8()..];
    }
    if digits.is_empty() {
        return None;
    }
    if plus {
        return Some(format!("+{digits}"));
    }
    if digits.len() < MIN_NATIONAL_DIGITS {
        return Some(digits);
    }
    if let Some(intl) = digits.strip_prefix("00") {
        return Some(format!("+{intl}"));
    }
    if cc == "1" {
        if let Some(intl) = digits.strip_prefix("011") {
            return Some(format!("+{intl}"));
        }
    }
    if cc.is_empty() {
        return Some(digits);
    }
    if let Some(national) = digits.strip_prefix('0') {
        return Some(format!("+{cc}{national}"));
    }
    if digits.starts_with(cc) && digits.len() >= cc.len() + MIN_NATIONAL_DIGITS {
        return Some(format!("+{digits}"));
    }
    Some(format!("+{cc}{digits}"))
}

/// `425-555-0100 x12` / `… ext. 12` / `…;ext=12` / `… extension 12` → the number.
fn strip_extension(s: &str) -> &str {
    let lower = s.to_ascii_lowercase();
    for marker in [";ext=", "extension", "ext.", "ext", "x"] {
        if let Some(at) = lower.rfind(marker) {
            let tail = lower[at + marker.len()..].trim();
            let head = s[..at].trim_end();
            if !tail.is_empty()
                && tail.bytes().all(|b| b.is_ascii_digit())
                && head.bytes().filter(u8::is_ascii_digit).count() >= MIN_NATIONAL_DIGITS
            {
                return head;
            }
        }
    }
    s
}

/// A contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRecord {
    /// The id from the CSV (unique).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The phone number or address, normalised.
    pub phone: String,
    /// The CSV's other columns, in column order (empty values left out).
    pub fields: Vec<(String, String)>,
}

impl ContactRecord {
    /// The value of a field (case-insensitive key), or of `id`/`name`/`phone`.
    pub fn get(&self, key: &str) -> Option<&str> {
        match key.to_ascii_lowercase().as_str() {
            "id" => Some(&self.id),
            "name" => Some(&self.name),
            "phone" => Some(&self.phone),
            _ => self
                .fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str()),
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows written (new or updated contacts).
    pub imported: usize,
    /// Rows left out: (1-based line where the row starts, why).
    pub skipped: Vec<(usize, String)>,
}

/// A directory failure: one line naming the file and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryError(pub String);

impl fmt::Display for DirectoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DirectoryError {}

/// The contact directory (one SQLite connection).
pub struct Directory {
    conn: Connection,
    path: PathBuf,
    default_country_code: String,
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory")
            .field("path", &self.path)
            .field("default_country_code", &self.default_country_code)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE contacts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    phone TEXT NOT NULL,
    phone_raw TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX contacts_phone ON contacts (phone);
CREATE INDEX contacts_name ON contacts (name COLLATE NOCASE);
CREATE TABLE fields (
    contact_id TEXT NOT NULL,
    key TEXT NOT NULL COLLATE NOCASE,
    value TEXT NOT NULL COLLATE NOCASE,
    ord INTEGER NOT NULL,
    PRIMARY KEY (contact_id, key)
) WITHOUT ROWID;
CREATE INDEX fields_key_value ON fields (key, value);
";

const SELECT_CONTACT: &str = "SELECT id, name, phone FROM contacts";

impl Directory {
    /// Opens (creating the file, its folder and the schema on first use) the
    /// directory at `path`; phone numbers are normalised with
    /// `default_country_code` (digits, `+` optional, may be empty). If the
    /// file's numbers were normalised with another code they are
    /// re-normalised now.
    ///
    /// # Errors
    /// A bad country code, a file that cannot be opened, is not SQLite, is
    /// another application's database or has a schema version this code
    /// does not know.
    pub fn open(path: &Path, default_country_code: &str) -> Result<Directory, DirectoryError> {
        let cc = check_country_code(path, default_country_code)?;
        let mut dir = Self::open_file(path)?;
        let stored = dir.stored_country_code()?;
        if stored.as_deref() != Some(cc.as_str()) {
            dir.renormalize(&cc)?;
        }
        dir.default_country_code = cc;
        Ok(dir)
    }

    /// Opens the directory at `path` with the default country code stored in
    /// it (none for a new file), for tools that have no manifest.
    ///
    /// # Errors
    /// As [`Directory::open`].
    pub fn open_stored(path: &Path) -> Result<Directory, DirectoryError> {
        let mut dir = Self::open_file(path)?;
        match dir.stored_country_code()? {
            Some(cc) => dir.default_country_code = cc,
            None => dir.renormalize("")?,
        }
        Ok(dir)
    }

    fn open_file(path: &Path) -> Result<Directory, DirectoryError> {
        let name = path.display().to_string();
        if path.is_dir() {
            return Err(DirectoryError(format!(
                "{name}: not a contact directory: it is a folder"
            )));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                DirectoryError(format!(
                    "{name}: cannot create the folder {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let conn = Connection::open(path)
            .map_err(|e| DirectoryError(format!("{name}: cannot open: {}", sql_message(&e))))?;
        let not_ours = |e: rusqlite::Error| {
            DirectoryError(format!(
                "{name}: not a contact directory: {}",
                sql_message(&e)
            ))
        };
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(not_ours)?;
        // SQLite reads the header lazily: this is where a file that is not
        // a database (or a damaged one) shows.
        let (version, app_id): (i64, i64) = conn
            .query_row(
                "SELECT user_version, application_id FROM pragma_user_version, pragma_application_id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(not_ours)?;
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .and_then(|mut st| {
                st.query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()
            })
            .map_err(not_ours)?;
        if app_id != 0 && app_id != APPLICATION_ID {
            return Err(DirectoryError(format!(
                "{name}: not a contact directory: an SQLite database of another application (application_id {app_id:#x})"
            )));
        }
        if version == 0 && app_id == 0 {
            if !tables.is_empty() {
                return Err(DirectoryError(format!(
                    "{name}: not a contact directory: an SQLite database with other tables ({})",
                    tables.join(", ")
                )));
            }
            let create = format!(
                "PRAGMA journal_mode = WAL;
                 BEGIN;
                 {SCHEMA}
                 PRAGMA application_id = {APPLICATION_ID};
                 PRAGMA user_version = {SCHEMA_VERSION};
                 COMMIT;"
            );
            conn.execute_batch(&create).map_err(|e| {
                DirectoryError(format!(
                    "{name}: cannot create the contact directory: {}",
                    sql_message(&e)
                ))
            })?;
        } else if version > SCHEMA_VERSION {
            return Err(DirectoryError(format!(
                "{name}: contact directory schema version {version} is newer than this cti-host reads ({SCHEMA_VERSION}); upgrade cti-host"
            )));
        } else if version != SCHEMA_VERSION {
            return Err(DirectoryError(format!(
                "{name}: not a contact directory: unknown schema version {version} (expected {SCHEMA_VERSION})"
            )));
        } else {
            let missing: Vec<&str> = ["contacts", "fields", "settings"]
                .into_iter()
                .filter(|t| !tables.iter().any(|have| have == t))
                .collect();
            if !missing.is_empty() {
                return Err(DirectoryError(format!(
                    "{name}: not a contact directory: table {} missing",
                    missing.join(", ")
                )));
            }
        }
        // 64 MiB of page cache at most: the indexes of a million contacts
        // stay in memory, and a large import does not thrash.
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;")
            .map_err(not_ours)?;
        Ok(Directory {
            conn,
            path: path.to_path_buf(),
            default_country_code: String::new(),
        })
    }

    fn err(&self, what: &str, e: &rusqlite::Error) -> DirectoryError {
        DirectoryError(format!(
            "{}: {what}: {}",
            self.path.display(),
            sql_message(e)
        ))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The default country code phone numbers are normalised with.
    pub fn default_country_code(&self) -> &str {
        &self.default_country_code
    }

    /// `normalize` with this directory's default country code.
    pub fn normalize(&self, raw: &str) -> String {
        normalize(raw, &self.default_country_code)
    }

    fn stored_country_code(&self) -> Result<Option<String>, DirectoryError> {
        self.conn
            .query_row(
                "SELECT value FROM settings WHERE key = 'default_country_code'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err("cannot read the settings", &e))
    }

    /// Re-normalises every phone number with `cc` and stores `cc`.
    fn renormalize(&mut self, cc: &str) -> Result<(), DirectoryError> {
        let path = self.path.display().to_string();
        let fail = |e: rusqlite::Error| {
            DirectoryError(format!(
                "{path}: cannot re-normalise the phone numbers: {}",
                sql_message(&e)
            ))
        };
        let tx = self.conn.transaction().map_err(fail)?;
        {
            let mut read = tx
                .prepare("SELECT id, phone, phone_raw FROM contacts")
                .map_err(fail)?;
            let mut write = tx
                .prepare("UPDATE contacts SET phone = ?2 WHERE id = ?1")
                .map_err(fail)?;
            let mut rows = read.query([]).map_err(fail)?;
            while let Some(row) = rows.next().map_err(fail)? {
                let id: String = row.get(0).map_err(fail)?;
                let phone: String = row.get(1).map_err(fail)?;
                let raw: String = row.get(2).map_err(fail)?;
                let new = normalize(&raw, cc);
                if new != phone {
                    write.execute(params![id, new]).map_err(fail)?;
                }
            }
            tx.execute(
                "INSERT INTO settings (key, value) VALUES ('default_country_code', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [cc],
            )
            .map_err(fail)?;
        }
        tx.commit().map_err(fail)
    }

    /// Imports a CSV file (RFC 4180; UTF-8, optional BOM). The header row
    /// must name `id`, `name` and `phone` (any order, any case); every other
    /// column becomes a field. Rows are upserted by id in one transaction; a
    /// malformed row (bad quoting, wrong number of fields, empty id or phone,
    /// an id already seen in the file, not UTF-8) is skipped and reported
    /// with its line number.
    ///
    /// # Errors
    /// The file cannot be read, has no usable header, or the database fails
    /// (then nothing is imported).
    pub fn import_csv(&mut self, csv: &Path) -> Result<ImportReport, DirectoryError> {
        let file = csv.display().to_string();
        let bytes =
            std::fs::read(csv).map_err(|e| DirectoryError(format!("{file}: cannot read: {e}")))?;
        let mut records = CsvReader::new(&bytes);
        let header = match records.next() {
            None => {
                return Err(DirectoryError(format!(
                    "{file}: empty: the first row must be a header naming id, name and phone"
                )))
            }
            Some(Ok(r)) => r,
            Some(Err((line, reason))) => {
                return Err(DirectoryError(format!(
                    "{file}:{line}: header row: {reason}"
                )))
            }
        };
        let columns = Columns::from_header(&header.fields)
            .map_err(|reason| DirectoryError(format!("{file}:{}: {reason}", header.line)))?;
        let cc = self.default_country_code.clone();
        let mut report = ImportReport::default();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let fail = |e: rusqlite::Error| {
            DirectoryError(format!(
                "{}: import of {file} failed, nothing imported: {}",
                self.path.display(),
                sql_message(&e)
            ))
        };
        let tx = self.conn.transaction().map_err(fail)?;
        {
            let mut upsert = tx
                .prepare(
                    "INSERT INTO contacts (id, name, phone, phone_raw) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO UPDATE SET
                        name = excluded.name, phone = excluded.phone, phone_raw = excluded.phone_raw",
                )
                .map_err(fail)?;
            let mut clear = tx
                .prepare("DELETE FROM fields WHERE contact_id = ?1")
                .map_err(fail)?;
            let mut add = tx
                .prepare("INSERT INTO fields (contact_id, key, value, ord) VALUES (?1, ?2, ?3, ?4)")
                .map_err(fail)?;
            for record in records {
                let record = match record {
                    Ok(r) => r,
                    Err((line, reason)) => {
                        report.skipped.push((line, reason));
                        continue;
                    }
                };
                let row = match columns.row(&record.fields, &cc) {
                    Ok(r) => r,
                    Err(reason) => {
                        report.skipped.push((record.line, reason));
                        continue;
                    }
                };
                if let Some(first) = seen.get(row.id) {
                    report.skipped.push((
                        record.line,
                        format!("duplicate id \"{}\" (first on line {first})", row.id),
                    ));
                    continue;
                }
                seen.insert(row.id.to_owned(), record.line);
                upsert
                    .execute(params![row.id, row.name, row.phone, row.phone_raw])
                    .map_err(fail)?;
                clear.execute([row.id]).map_err(fail)?;
                for (ord, (key, value)) in row.fields.iter().enumerate() {
                    add.execute(params![row.id, key, value, ord as i64])
                        .map_err(fail)?;
                }
                report.imported += 1;
            }
        }
        tx.commit().map_err(fail)?;
        Ok(report)
    }

    fn query(
        &self,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<ContactRecord>, DirectoryError> {
        let fail = |e: rusqlite::Error| self.err("lookup failed", &e);
        let mut st = self.conn.prepare_cached(sql).map_err(fail)?;
        let mut out: Vec<ContactRecord> = st
            .query_map(args, |r| {
                Ok(ContactRecord {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    phone: r.get(2)?,
                    fields: Vec::new(),
                })
            })
            .map_err(fail)?
            .collect::<Result<_, _>>()
            .map_err(fail)?;
        let mut fields = self
            .conn
            .prepare_cached("SELECT key, value FROM fields WHERE contact_id = ?1 ORDER BY ord")
            .map_err(fail)?;
        for c in &mut out {
            c.fields = fields
                .query_map([&c.id], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(fail)?
                .collect::<Result<_, _>>()
                .map_err(fail)?;
        }
        Ok(out)
    }

    /// Up to `limit` contacts, by id.
    ///
    /// # Errors
    /// The database fails.
    pub fn list(&self, limit: usize) -> Result<Vec<ContactRecord>, DirectoryError> {
        self.query(
            &format!("{SELECT_CONTACT} ORDER BY id LIMIT ?1"),
            &[&sql_limit(limit)],
        )
    }

    /// The contact with this id.
    ///
    /// # Errors
    /// The database fails.
    pub fn get(&self, id: &str) -> Result<Option<ContactRecord>, DirectoryError> {
        Ok(self
            .query(&format!("{SELECT_CONTACT} WHERE id = ?1"), &[&id.trim()])?
            .pop())
    }

    /// Up to `limit` contacts whose phone number or address is `raw_number`
    /// once both are normalised (indexed), by id.
    ///
    /// # Errors
    /// The database fails.
    pub fn find_by_phone(
        &self,
        raw_number: &str,
        limit: usize,
    ) -> Result<Vec<ContactRecord>, DirectoryError> {
        let phone = self.normalize(raw_number);
        if phone.is_empty() {
            return Ok(Vec::new());
        }
        self.query(
            &format!("{SELECT_CONTACT} WHERE phone = ?1 ORDER BY id LIMIT ?2"),
            &[&phone, &sql_limit(limit)],
        )
    }

    /// Up to `limit` contacts whose field `key` is `value` (both compared
    /// case-insensitively, indexed), by id. `id`, `name` and `phone` search
    /// those columns (`phone` as [`Directory::find_by_phone`]).
    ///
    /// # Errors
    /// The database fails.
    pub fn find_by_field(
        &self,
        key: &str,
        value: &str,
        limit: usize,
    ) -> Result<Vec<ContactRecord>, DirectoryError> {
        let key = key.trim();
        let value = value.trim();
        match key.to_ascii_lowercase().as_str() {
            "phone" => self.find_by_phone(value, limit),
            "id" => Ok(if limit == 0 {
                Vec::new()
            } else {
                self.get(value)?.into_iter().collect()
            }),
            "name" => self.query(
                &format!("{SELECT_CONTACT} WHERE name = ?1 COLLATE NOCASE ORDER BY id LIMIT ?2"),
                &[&value, &sql_limit(limit)],
            ),
            _ => self.query(
                "SELECT c.id, c.name, c.phone FROM fields f JOIN contacts c ON c.id = f.contact_id
                 WHERE f.key = ?1 AND f.value = ?2 ORDER BY f.contact_id LIMIT ?3",
                &[&key, &value, &sql_limit(limit)],
            ),
        }
    }

    /// How many contacts there are.
    ///
    /// # Errors
    /// The database fails.
    pub fn count(&self) -> Result<u64, DirectoryError> {
        self.conn
            .query_row("SELECT count(*) FROM contacts", [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err("cannot count the contacts", &e))
    }
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// SQLite's own words for an error ("file is not a database").
fn sql_message(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(msg)) if !msg.is_empty() => msg.clone(),
        other => other.to_string(),
    }
}

fn check_country_code(path: &Path, cc: &str) -> Result<String, DirectoryError> {
    let digits = cc.trim().trim_start_matches('+');
    if digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return Err(DirectoryError(format!(
            "{}: default country code \"{cc}\" is not 1 to 3 digits (e.g. \"1\", \"44\")",
            path.display()
        )));
    }
    Ok(digits.to_owned())
}

/// Where `id`, `name` and `phone` are in a row, and the other columns' names.
struct Columns {
    id: usize,
    name: usize,
    phone: usize,
    extra: Vec<(usize, String)>,
    width: usize,
}

/// One row, checked.
struct Row<'a> {
    id: &'a str,
    name: &'a str,
    phone: String,
    phone_raw: &'a str,
    fields: Vec<(&'a str, &'a str)>,
}

impl Columns {
    fn from_header(header: &[String]) -> Result<Columns, String> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let (mut id, mut name, mut phone) = (None, None, None);
        let mut extra = Vec::new();
        for (i, h) in header.iter().enumerate() {
            let h = h.trim();
            if h.is_empty() {
                return Err(format!("header: column {} has no name", i + 1));
            }
            let key = h.to_lowercase();
            if let Some(first) = seen.insert(key.clone(), i) {
                return Err(format!(
                    "header: column \"{h}\" appears twice (columns {} and {})",
                    first + 1,
                    i + 1
                ));
            }
            match key.as_str() {
                "id" => id = Some(i),
                "name" => name = Some(i),
                "phone" => phone = Some(i),
                _ => extra.push((i, h.to_owned())),
            }
        }
        match (id, name, phone) {
            (Some(id), Some(name), Some(phone)) => Ok(Columns {
                id,
                name,
                phone,
                extra,
                width: header.len(),
            }),
            _ => {
                let missing: Vec<&str> = [("id", id), ("name", name), ("phone", phone)]
                    .into_iter()
                    .filter(|(_, v)| v.is_none())
                    .map(|(n, _)| n)
                    .collect();
                Err(format!(
                    "header must name the columns id, name and phone; missing {} (found: {})",
                    missing.join(", "),
                    header.join(",")
                ))
            }
        }
    }

    fn row<'a>(&'a self, fields: &'a [String], cc: &str) -> Result<Row<'a>, String> {
        if fields.len() != self.width {
            return Err(format!(
                "expected {} fields, found {}",
                self.width,
                fields.len()
            ));
        }
        let id = fields[self.id].trim();
        if id.is_empty() {
            return Err("empty id".to_owned());
        }
        let phone_raw = fields[self.phone].trim();
        if phone_raw.is_empty() {
            return Err(format!("contact \"{id}\": empty phone"));
        }
        let phone = normalize(phone_raw, cc);
        if phone.is_empty() {
            return Err(format!(
                "contact \"{id}\": phone \"{phone_raw}\" is not a number or address"
            ));
        }
        Ok(Row {
            id,
            name: fields[self.name].trim(),
            phone,
            phone_raw,
            fields: self
                .extra
                .iter()
                .map(|(i, k)| (k.as_str(), fields[*i].trim()))
                .filter(|(_, v)| !v.is_empty())
                .collect(),
        })
    }
}

/// One CSV record: the line it starts on and its fields.
#[derive(Debug, PartialEq, Eq)]
struct CsvRecord {
    line: usize,
    fields: Vec<String>,
}

/// An RFC 4180 reader over bytes: records end with LF or CRLF, fields are
/// separated by commas, a field in double quotes may hold commas, quotes
/// (doubled) and line breaks. Blank lines are skipped. A malformed record
/// yields `Err((line, reason))` and reading goes on at the next line.
struct CsvReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> CsvReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let pos = if bytes.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        CsvReader {
            bytes,
            pos,
            line: 1,
        }
    }

    /// Skips to the start of the line after the one holding byte `at`,
    /// counting lines from `line` (the line of `at`).
    fn resume_after(&mut self, at: usize, line: usize) {
        match self.bytes[at..].iter().position(|&b| b == b'\n') {
            Some(nl) => {
                self.pos = at + nl + 1;
                self.line = line + 1;
            }
            None => {
                self.pos = self.bytes.len();
                self.line = line;
            }
        }
    }

    fn field(raw: Vec<u8>, line: usize, column: usize) -> Result<String, (usize, String)> {
        String::from_utf8(raw).map_err(|_| (line, format!("field {column} is not UTF-8 text")))
    }
}

impl Iterator for CsvReader<'_> {
    type Item = Result<CsvRecord, (usize, String)>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.bytes;
        // Skip blank (or whitespace-only) lines.
        loop {
            if self.pos >= b.len() {
                return None;
            }
            let end = b[self.pos..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| self.pos + n);
            if b[self.pos..end].iter().all(|c| c.is_ascii_whitespace()) {
                self.pos = (end + 1).min(b.len());
                self.line += 1;
                if end >= b.len() {
                    return None;
                }
                continue;
            }
            break;
        }
        let start_line = self.line;
        let mut line = self.line;
        let mut fields = Vec::new();
        let mut i = self.pos;
        loop {
            // One field starts at i.
            let column = fields.len() + 1;
            let mut value = Vec::new();
            if b.get(i) == Some(&b'"') {
                let open_at = i;
                let open_line = line;
                i += 1;
                loop {
                    match b.get(i) {
                        None => {
                            self.resume_after(open_at, open_line);
                            return Some(Err((
                                start_line,
                                format!(
                                    "bad quoting: field {column} opens a quote on line {open_line} that is never closed"
                                ),
                            )));
                        }
                        Some(b'"') if b.get(i + 1) == Some(&b'"') => {
                            value.push(b'"');
                            i += 2;
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            if c == b'\n' {
                                line += 1;
                            }
                            value.push(c);
                            i += 1;
                        }
                    }
                }
                // After the closing quote: a comma, the end of the record, or
                // (leniently) spaces before them.
                while b.get(i).is_some_and(|c| *c == b' ' || *c == b'\t') {
                    i += 1;
                }
                match b.get(i) {
                    None | Some(b',') | Some(b'\n') => {}
                    Some(b'\r') if matches!(b.get(i + 1), None | Some(b'\n')) => {}
                    Some(_) => {
                        self.resume_after(i, line);
                        return Some(Err((
                            start_line,
                            format!("bad quoting: field {column} has text after its closing quote"),
                        )));
                    }
                }
            } else {
                loop {
                    match b.get(i) {
                        None | Some(b',') | Some(b'\n') => break,
                        Some(b'\r') if matches!(b.get(i + 1), None | Some(b'\n')) => break,
                        Some(b'"') => {
                            self.resume_after(i, line);
                            return Some(Err((
                                start_line,
                                format!(
                                    "bad quoting: field {column} has a quote but does not start with one"
                                ),
                            )));
                        }
                        Some(&c) => {
                            value.push(c);
                            i += 1;
                        }
                    }
                }
            }
            fields.push(match Self::field(value, start_line, column) {
                Ok(f) => f,
                Err(e) => {
                    // Finish the record so reading resumes after it.
                    self.resume_after(i, line);
                    return Some(Err(e));
                }
            });
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'\r') => {
                    i += 1;
                    if b.get(i) == Some(&b'\n') {
                        i += 1;
                    }
                    self.pos = i;
                    self.line = line + 1;
                    break;
                }
                Some(b'\n') => {
                    self.pos = i + 1;
                    self.line = line + 1;
                    break;
                }
                _ => {
                    self.pos = b.len();
                    self.line = line;
                    break;
                }
            }
        }
        Some(Ok(CsvRecord {
            line: start_line,
            fields,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NUMBER: &str = "+14255550100";

    #[test]
    fn directory_normalize_same_number_in_every_form() {
        for raw in [
            "+1 (425) 555-0100",
            "14255550100",
            "001 425 555 0100",
            "(425) 555-0100",
            "425.555.0100",
            "425-555-0100",
            "+1.425.555.0100",
            "011 1 425 555 0100",
            "tel:+1-425-555-0100",
            "TEL:+1-425-555-0100;phone-context=example.com",
            "tel:4255550100",
            "sip:+14255550100@host;user=phone",
            "sips:+14255550100@host:5061;user=phone",
            "sip:14255550100@10.0.0.1:5060",
            "sip:+1-425-555-0100;isub=12@host",
            "\"Alice\" <sip:+14255550100@host>;tag=abc",
            "<tel:+14255550100>",
            "  +1 425 555 0100  ",
            "+1 425 555 0100 x123",
            "425-555-0100 ext. 9",
            "tel:+14255550100;ext=77",
        ] {
            assert_eq!(normalize(raw, "1"), NUMBER, "{raw}");
        }
        // The country code may be written with a +.
        assert_eq!(normalize("(425) 555-0100", "+1"), NUMBER);
        // International forms need no default country code.
        for raw in [
            "+1 (425) 555-0100",
            "001 425 555 0100",
            "sip:+14255550100@h",
        ] {
            assert_eq!(normalize(raw, ""), NUMBER, "{raw}");
            assert_eq!(normalize(raw, "44"), NUMBER, "{raw}");
        }
    }

    #[test]
    fn directory_normalize_national_forms() {
        // Trunk prefix 0.
        assert_eq!(normalize("020 7946 0000", "44"), "+442079460000");
        assert_eq!(normalize("+44 (0)20 7946 0000", "44"), "+442079460000");
        assert_eq!(normalize("0044 (0)20 7946 0000", "1"), "+442079460000");
        assert_eq!(normalize("442079460000", "44"), "+442079460000");
        assert_eq!(normalize("2079460000", "44"), "+442079460000");
        // A national number that does not start with the country code.
        assert_eq!(normalize("138 1234 5678", "86"), "+8613812345678");
        assert_eq!(normalize("86 138 1234 5678", "86"), "+8613812345678");
        // 011 is the international prefix only in NANP.
        assert_eq!(normalize("011 44 20 7946 0000", "1"), "+442079460000");
        // Without a default country code national numbers stay digits.
        assert_eq!(normalize("(425) 555-0100", ""), "4255550100");
        assert_eq!(normalize("0049 30 1234567", ""), "+49301234567");
        // Extensions and short codes stay bare digits.
        assert_eq!(normalize("1001", "1"), "1001");
        assert_eq!(normalize("sip:1001@pbx.example.com", "1"), "1001");
        assert_eq!(normalize("911", "1"), "911");
        assert_eq!(normalize("00", "1"), "00");
    }

    #[test]
    fn directory_normalize_addresses() {
        assert_eq!(
            normalize("Alice@Example.com/phone", "1"),
            "alice@example.com"
        );
        assert_eq!(
            normalize("xmpp:Alice@Example.com/web", "1"),
            "alice@example.com"
        );
        assert_eq!(normalize("alice@example.com", "1"), "alice@example.com");
        assert_eq!(normalize("mailto:Bob@Example.org", "1"), "bob@example.org");
        assert_eq!(
            normalize("sip:Alice@Example.com;transport=tcp", "1"),
            "alice@example.com"
        );
        assert_eq!(
            normalize("sip:alice:secret@example.com:5060", "1"),
            "alice@example.com"
        );
        assert_eq!(normalize("<sips:Bob@Example.com>", "1"), "bob@example.com");
        assert_eq!(normalize("sip:pbx.example.com", "1"), "pbx.example.com");
        // Not a number: letters, stars, nothing.
        assert_eq!(normalize("1-800-FLOWERS", "1"), "1-800-flowers");
        assert_eq!(normalize("*86", "1"), "*86");
        assert_eq!(normalize("Anonymous", "1"), "anonymous");
        assert_eq!(normalize("", "1"), "");
        assert_eq!(normalize("   ", "1"), "");
        assert_eq!(normalize("+", "1"), "");
        assert_eq!(normalize("()", "1"), "");
        assert_eq!(normalize("<>", "1"), "");
    }

    fn records(text: &str) -> Vec<Result<CsvRecord, (usize, String)>> {
        CsvReader::new(text.as_bytes()).collect()
    }

    fn rec(line: usize, fields: &[&str]) -> Result<CsvRecord, (usize, String)> {
        Ok(CsvRecord {
            line,
            fields: fields.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    #[test]
    fn directory_csv_rfc4180() {
        let r = records(
            "\u{feff}id,name,phone\r\n1,\"Doe, Jane\",+1 425\r\n\n2,\"Say \"\"hi\"\"\",\"line1\nline2\"\n3,,\n4,a,\"\"",
        );
        assert_eq!(
            r,
            vec![
                rec(1, &["id", "name", "phone"]),
                rec(2, &["1", "Doe, Jane", "+1 425"]),
                rec(4, &["2", "Say \"hi\"", "line1\nline2"]),
                rec(6, &["3", "", ""]),
                rec(7, &["4", "a", ""]),
            ]
        );
        // A trailing comma is an empty last field; CR alone inside a field stays.
        assert_eq!(records("a,\n"), vec![rec(1, &["a", ""])]);
        assert_eq!(records("a\rb,c\n"), vec![rec(1, &["a\rb", "c"])]);
        assert_eq!(records("\"a\" ,b"), vec![rec(1, &["a", "b"])]);
    }

    #[test]
    fn directory_csv_bad_quoting_skips_only_the_bad_line() {
        let r = records("1,ab\"c,x\n2,\"ok\",y\n3,\"a\"b,z\n4,\"never closed,w\n5,e,f\n");
        assert_eq!(r.len(), 5);
        assert!(
            matches!(&r[0], Err((1, m)) if m.contains("bad quoting")),
            "{r:?}"
        );
        assert_eq!(r[1], rec(2, &["2", "ok", "y"]));
        assert!(
            matches!(&r[2], Err((3, m)) if m.contains("after its closing quote")),
            "{r:?}"
        );
        assert!(
            matches!(&r[3], Err((4, m)) if m.contains("never closed")),
            "{r:?}"
        );
        assert_eq!(r[4], rec(5, &["5", "e", "f"]));
        // A multi-line field counts its lines.
        let r = records("\"a\nb\nc\",1\nx\"y\nz,2\n");
        assert_eq!(r[0], rec(1, &["a\nb\nc", "1"]));
        assert!(matches!(&r[1], Err((4, _))), "{r:?}");
        assert_eq!(r[2], rec(5, &["z", "2"]));
    }

    #[test]
    fn directory_csv_not_utf8() {
        let r: Vec<_> = CsvReader::new(b"1,caf\xe9,x\n2,b,y\n").collect();
        assert!(
            matches!(&r[0], Err((1, m)) if m.contains("not UTF-8")),
            "{r:?}"
        );
        assert_eq!(r[1], rec(2, &["2", "b", "y"]));
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn directory_import_good_and_bad_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let csv = write(
            tmp.path(),
            "c.csv",
            "ID,Name,Phone,Account,Email\n\
             1,Alice Smith,+1 (425) 555-0100,A-100,alice@example.com\n\
             2,Bob,\"(425) 555-0199\",A-200,\n\
             3,Too few,+14255550111\n\
             4,No phone,,A-400,x@y\n\
             1,Alice again,+1 425 555 0101,A-101,\n\
             5,Bad \"quote,+14255550122,A-500,\n\
             ,No id,+14255550133,A-600,\n\
             6,\"Carol\nJones\",sip:carol@Example.com,A-600,carol@example.com\n\
             7,Dave,()  ,A-700,\n",
        );
        let db = tmp.path().join("sub/contacts.db");
        let mut d = Directory::open(&db, "1").unwrap();
        let rep = d.import_csv(&csv).unwrap();
        assert_eq!(rep.imported, 3, "{rep:?}");
        let lines: Vec<usize> = rep.skipped.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![4, 5, 6, 7, 8, 11], "{rep:?}");
        assert!(rep.skipped[0].1.contains("expected 5 fields, found 3"));
        assert!(rep.skipped[1].1.contains("empty phone"));
        assert!(rep.skipped[2]
            .1
            .contains("duplicate id \"1\" (first on line 2)"));
        assert!(rep.skipped[3].1.contains("bad quoting"));
        assert!(rep.skipped[4].1.contains("empty id"));
        assert!(rep.skipped[5].1.contains("not a number or address"));
        assert_eq!(d.count().unwrap(), 3);

        let all = d.list(10).unwrap();
        assert_eq!(
            all.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["1", "2", "6"]
        );
        assert_eq!(
            all[0],
            ContactRecord {
                id: "1".into(),
                name: "Alice Smith".into(),
                phone: NUMBER.into(),
                fields: vec![
                    ("Account".into(), "A-100".into()),
                    ("Email".into(), "alice@example.com".into())
                ],
            }
        );
        assert_eq!(all[1].fields, vec![("Account".into(), "A-200".into())]);
        assert_eq!(all[2].name, "Carol\nJones");
        assert_eq!(all[2].phone, "carol@example.com");
        assert_eq!(d.list(1).unwrap().len(), 1);

        for raw in ["+1 (425) 555-0100", "14255550100", "tel:4255550100"] {
            let hits = d.find_by_phone(raw, 10).unwrap();
            assert_eq!(hits.len(), 1, "{raw}");
            assert_eq!(hits[0].id, "1");
        }
        assert_eq!(
            d.find_by_phone("sip:Carol@example.com", 10).unwrap()[0].id,
            "6"
        );
        assert!(d.find_by_phone("+14255550111", 10).unwrap().is_empty());
        assert!(d.find_by_phone("", 10).unwrap().is_empty());

        assert_eq!(d.find_by_field("account", "a-200", 10).unwrap()[0].id, "2");
        assert_eq!(
            d.find_by_field("Email", "CAROL@example.com", 10).unwrap()[0].id,
            "6"
        );
        assert!(d.find_by_field("account", "A-999", 10).unwrap().is_empty());
        assert!(d.find_by_field("nosuch", "A-100", 10).unwrap().is_empty());
        assert_eq!(d.find_by_field("id", "2", 10).unwrap()[0].name, "Bob");
        assert_eq!(d.find_by_field("name", "bob", 10).unwrap()[0].id, "2");
        assert_eq!(
            d.find_by_field("phone", "425 555 0199", 10).unwrap()[0].id,
            "2"
        );
        assert_eq!(
            d.get("6").unwrap().unwrap().get("email"),
            Some("carol@example.com")
        );
        assert!(d.get("99").unwrap().is_none());
    }

    #[test]
    fn directory_upsert_and_shared_numbers() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("contacts.db");
        let first = write(
            tmp.path(),
            "a.csv",
            "id,name,phone,tier\n1,Alice,4255550100,gold\n2,Bob,4255550100,silver\n",
        );
        let second = write(
            tmp.path(),
            "b.csv",
            "id,phone,name\n1,+44 20 7946 0000,Alice B\n",
        );
        let mut d = Directory::open(&db, "1").unwrap();
        assert_eq!(d.import_csv(&first).unwrap().imported, 2);
        let shared = d.find_by_phone("+1 425 555 0100", 10).unwrap();
        assert_eq!(
            shared.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["1", "2"]
        );
        assert_eq!(d.find_by_phone("+1 425 555 0100", 1).unwrap().len(), 1);
        assert_eq!(d.find_by_field("tier", "gold", 10).unwrap().len(), 1);
        // Re-import updates in place and replaces the fields.
        assert_eq!(d.import_csv(&second).unwrap().imported, 1);
        assert_eq!(d.count().unwrap(), 2);
        let alice = d.get("1").unwrap().unwrap();
        assert_eq!(alice.name, "Alice B");
        assert_eq!(alice.phone, "+442079460000");
        assert!(alice.fields.is_empty());
        assert!(d.find_by_field("tier", "gold", 10).unwrap().is_empty());
        drop(d);
        // Reopened: the data stays.
        let d = Directory::open(&db, "1").unwrap();
        assert_eq!(d.count().unwrap(), 2);
    }

    #[test]
    fn directory_country_code_change_renormalizes() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("contacts.db");
        let csv = write(tmp.path(), "a.csv", "id,name,phone\n1,A,020 7946 0000\n");
        let mut d = Directory::open(&db, "").unwrap();
        d.import_csv(&csv).unwrap();
        assert_eq!(d.get("1").unwrap().unwrap().phone, "02079460000");
        drop(d);
        let d = Directory::open(&db, "44").unwrap();
        assert_eq!(d.get("1").unwrap().unwrap().phone, "+442079460000");
        assert_eq!(d.find_by_phone("+44 20 7946 0000", 5).unwrap().len(), 1);
        drop(d);
        let d = Directory::open_stored(&db).unwrap();
        assert_eq!(d.default_country_code(), "44");
        let err = Directory::open(&db, "abc").unwrap_err().to_string();
        assert!(err.contains("default country code \"abc\""), "{err}");
    }

    #[test]
    fn directory_import_file_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let mut d = Directory::open(&tmp.path().join("contacts.db"), "1").unwrap();
        let err = d
            .import_csv(&tmp.path().join("nope.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.csv: cannot read"), "{err}");
        let empty = write(tmp.path(), "empty.csv", "\n\n");
        let err = d.import_csv(&empty).unwrap_err().to_string();
        assert!(err.contains("empty.csv: empty"), "{err}");
        let nohdr = write(tmp.path(), "nohdr.csv", "1,Alice,+14255550100\n");
        let err = d.import_csv(&nohdr).unwrap_err().to_string();
        assert!(err.contains("nohdr.csv:1: header must name the columns id, name and phone; missing id, name, phone"), "{err}");
        let dup = write(tmp.path(), "dup.csv", "\nid,name,phone,Name\n");
        let err = d.import_csv(&dup).unwrap_err().to_string();
        assert!(
            err.contains("dup.csv:2: header: column \"Name\" appears twice"),
            "{err}"
        );
        assert_eq!(d.count().unwrap(), 0);
    }

    #[test]
    fn directory_corrupt_or_foreign_database() {
        let tmp = tempfile::tempdir().unwrap();
        let junk = write(
            tmp.path(),
            "contacts.db",
            &"this is not SQLite\n".repeat(400),
        );
        let err = Directory::open(&junk, "1").unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: not a contact directory: file is not a database",
                junk.display()
            )
        );
        // A database that was damaged after its header.
        let db = tmp.path().join("damaged.db");
        {
            let mut d = Directory::open(&db, "1").unwrap();
            let mut csv = String::from("id,name,phone\n");
            for i in 0..2000 {
                csv.push_str(&format!("{i},Name {i},+1425555{i:04}\n"));
            }
            let csv = write(tmp.path(), "many.csv", &csv);
            d.import_csv(&csv).unwrap();
            d.conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
        }
        let mut bytes = std::fs::read(&db).unwrap();
        assert!(bytes.len() > 8192);
        for b in &mut bytes[4096..] {
            *b = 0xA5;
        }
        std::fs::write(&db, &bytes).unwrap();
        // Opening or using it is an error, never a panic.
        if let Ok(d) = Directory::open(&db, "1") {
            let res = d.find_by_phone("+14255550100", 5).and_then(|_| d.count());
            let err = res.unwrap_err().to_string();
            assert!(err.contains("damaged.db"), "{err}");
        }
        // Another application's SQLite file.
        let other = tmp.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let err = Directory::open(&other, "1").unwrap_err().to_string();
        assert!(
            err.ends_with("not a contact directory: an SQLite database with other tables (t)"),
            "{err}"
        );
        // A newer schema.
        let newer = tmp.path().join("newer.db");
        drop(Directory::open(&newer, "1").unwrap());
        Connection::open(&newer)
            .unwrap()
            .execute_batch("PRAGMA user_version = 7")
            .unwrap();
        let err = Directory::open(&newer, "1").unwrap_err().to_string();
        assert!(err.contains("schema version 7 is newer"), "{err}");
        // A folder.
        let err = Directory::open(tmp.path(), "1").unwrap_err().to_string();
        assert!(err.contains("it is a folder"), "{err}");
    }
}
