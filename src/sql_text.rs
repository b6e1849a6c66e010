//! Reading an SQL job's text as PostgreSQL would, far enough to split it
//! into statements and to name the transaction-control ones (§18): no I/O.
//!
//! An SQL job is one transaction, so a `COMMIT` in its text would commit the
//! first half of a run that then fails. Such statements are refused when the
//! configuration is read, and that needs to know where a statement starts:
//! not inside a string literal (`'…'`, `E'…'` with backslash escapes), a
//! quoted identifier (`"…"`), a dollar quote (`$tag$…$tag$`), or a comment
//! (`--` to the end of the line, `/* … */`, nested as PostgreSQL nests them);
//! and not inside the `BEGIN ATOMIC … END` body of a `CREATE FUNCTION` or
//! `CREATE PROCEDURE`, whose semicolons end no statement (psql counts
//! `BEGIN`/`CASE` against `END` in a `CREATE` statement the same way).
//!
//! Why by hand rather than PostgreSQL's own parser (the `pg_query` crate):
//! that crate compiles the server's C parser with bindgen, which needs
//! clang at build time — a dependency a newcomer's machine and CI do not
//! have — and it parses one major version's grammar, refusing valid SQL of
//! a newer server. What is needed here is the lexer's view of quotes and
//! comments, which has not changed in decades, plus the first word or two of
//! each statement.

/// One statement of a job's text: its source, trimmed, and its first two
/// words (upper-cased) when it has any outside comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<'a> {
    pub text: &'a str,
    words: Vec<String>,
}

impl Statement<'_> {
    /// The transaction-control command this statement is, if it is one:
    /// `BEGIN`, `START TRANSACTION`, `COMMIT`, `END`, `ROLLBACK`, `ABORT`,
    /// `SAVEPOINT`, `RELEASE`, `PREPARE TRANSACTION`, `COMMIT PREPARED`,
    /// `ROLLBACK PREPARED`.
    pub fn transaction_control(&self) -> Option<&'static str> {
        let first = self.words.first()?.as_str();
        let second = self.words.get(1).map(String::as_str);
        Some(match (first, second) {
            ("BEGIN", _) => "BEGIN",
            ("START", Some("TRANSACTION")) => "START TRANSACTION",
            ("COMMIT", Some("PREPARED")) => "COMMIT PREPARED",
            ("COMMIT", _) => "COMMIT",
            ("END", _) => "END",
            ("ROLLBACK", Some("PREPARED")) => "ROLLBACK PREPARED",
            ("ROLLBACK", _) => "ROLLBACK",
            ("ABORT", _) => "ABORT",
            ("SAVEPOINT", _) => "SAVEPOINT",
            ("RELEASE", _) => "RELEASE",
            ("PREPARE", Some("TRANSACTION")) => "PREPARE TRANSACTION",
            _ => return None,
        })
    }
}

/// The statements of `sql` in order; comments-only and empty ones left out.
pub fn statements(sql: &str) -> Vec<Statement<'_>> {
    let mut out = Vec::new();
    let mut lexer = Lexer {
        src: sql.as_bytes(),
        pos: 0,
    };
    let mut start = 0;
    let mut words: Vec<String> = Vec::new();
    // A `CREATE` statement's BEGIN … END nesting (see the module doc).
    let mut is_create = false;
    let mut depth = 0u32;
    // Parentheses: `CREATE RULE … DO ALSO (INSERT …; INSERT …)`.
    let mut parens = 0u32;
    let mut finish = |start: usize, end: usize, words: &mut Vec<String>| {
        if !words.is_empty() {
            out.push(Statement {
                text: sql[start..end].trim(),
                words: std::mem::take(words),
            });
        }
    };
    while let Some(token) = lexer.next() {
        match token {
            Token::Semicolon if depth == 0 && parens == 0 => {
                finish(start, lexer.pos - 1, &mut words);
                start = lexer.pos;
                is_create = false;
            }
            Token::Word(range) => {
                let word = sql[range].to_ascii_uppercase();
                if words.is_empty() {
                    is_create = word == "CREATE";
                }
                if is_create {
                    match word.as_str() {
                        "BEGIN" => depth += 1,
                        "CASE" if depth > 0 => depth += 1,
                        "END" if depth > 0 => depth -= 1,
                        _ => {}
                    }
                }
                if words.len() < 2 {
                    words.push(word);
                }
            }
            Token::Open | Token::Close | Token::Semicolon | Token::Other => {
                match token {
                    Token::Open => parens += 1,
                    Token::Close => parens = parens.saturating_sub(1),
                    _ => {}
                }
                // Something that is not a word still starts the statement,
                // so that `(COMMIT)` is not read as one.
                if words.is_empty() {
                    words.push(String::new());
                }
            }
        }
    }
    finish(start, sql.len(), &mut words);
    out
}

/// The first transaction-control statement of `sql`, if any.
pub fn first_transaction_control(sql: &str) -> Option<&'static str> {
    statements(sql)
        .iter()
        .find_map(Statement::transaction_control)
}

enum Token {
    /// A keyword or bare identifier, by its byte range.
    Word(std::ops::Range<usize>),
    Semicolon,
    Open,
    Close,
    /// Anything else: a literal, a quoted identifier, an operator, a number.
    Other,
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn peek(&self, at: usize) -> Option<u8> {
        self.src.get(self.pos + at).copied()
    }

    fn next(&mut self) -> Option<Token> {
        loop {
            let c = self.peek(0)?;
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => self.pos += 1,
                b'-' if self.peek(1) == Some(b'-') => {
                    while let Some(c) = self.peek(0) {
                        self.pos += 1;
                        if c == b'\n' {
                            break;
                        }
                    }
                }
                b'/' if self.peek(1) == Some(b'*') => self.block_comment(),
                _ => break,
            }
        }
        let c = self.peek(0)?;
        let start = self.pos;
        Some(match c {
            b';' => {
                self.pos += 1;
                Token::Semicolon
            }
            b'(' => {
                self.pos += 1;
                Token::Open
            }
            b')' => {
                self.pos += 1;
                Token::Close
            }
            b'\'' => {
                self.quoted(b'\'', false);
                Token::Other
            }
            b'"' => {
                self.quoted(b'"', false);
                Token::Other
            }
            b'e' | b'E' if self.peek(1) == Some(b'\'') => {
                self.pos += 1;
                self.quoted(b'\'', true);
                Token::Other
            }
            b'$' => {
                if !self.dollar_quote() {
                    // A parameter ($1) or a lone dollar.
                    self.pos += 1;
                    while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                        self.pos += 1;
                    }
                }
                Token::Other
            }
            c if is_ident_start(c) => {
                while self.peek(0).is_some_and(is_ident_char) {
                    self.pos += 1;
                }
                // U&'…', B'…', X'…', N'…': a prefixed literal is one token.
                if self.peek(0) == Some(b'\'') {
                    self.quoted(b'\'', false);
                    return Some(Token::Other);
                }
                if self.peek(0) == Some(b'&') && self.peek(1) == Some(b'\'') {
                    self.pos += 1;
                    self.quoted(b'\'', false);
                    return Some(Token::Other);
                }
                Token::Word(start..self.pos)
            }
            _ => {
                // One byte of an operator or number (UTF-8 continuation
                // bytes included: they never start a quote or a comment).
                self.pos += 1;
                Token::Other
            }
        })
    }

    /// From an opening `quote` to its closing one; a doubled quote is part
    /// of the text, and so is a backslash-escaped one in an `E'…'` string.
    fn quoted(&mut self, quote: u8, backslashes: bool) {
        self.pos += 1;
        while let Some(c) = self.peek(0) {
            self.pos += 1;
            if backslashes && c == b'\\' {
                self.pos += 1;
            } else if c == quote {
                if self.peek(0) == Some(quote) {
                    self.pos += 1;
                } else {
                    return;
                }
            }
        }
    }

    fn block_comment(&mut self) {
        self.pos += 2;
        let mut depth = 1u32;
        while let Some(c) = self.peek(0) {
            if c == b'/' && self.peek(1) == Some(b'*') {
                depth += 1;
                self.pos += 2;
            } else if c == b'*' && self.peek(1) == Some(b'/') {
                depth -= 1;
                self.pos += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.pos += 1;
            }
        }
    }

    /// A `$tag$ … $tag$` quote (the tag may be empty); false when the `$`
    /// here opens none.
    fn dollar_quote(&mut self) -> bool {
        let rest = &self.src[self.pos + 1..];
        let tag_len = rest
            .iter()
            .take_while(|&&c| c != b'$' && is_ident_char(c))
            .count();
        if rest.get(tag_len) != Some(&b'$') || rest.first().is_some_and(u8::is_ascii_digit) {
            return false;
        }
        let delimiter = &self.src[self.pos..self.pos + tag_len + 2];
        let body_start = self.pos + delimiter.len();
        let end = self.src[body_start..]
            .windows(delimiter.len())
            .position(|w| w == delimiter)
            .map_or(self.src.len(), |at| body_start + at + delimiter.len());
        self.pos = end;
        true
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_char(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(sql: &str) -> Option<&'static str> {
        first_transaction_control(sql)
    }

    fn texts(sql: &str) -> Vec<&str> {
        statements(sql).iter().map(|s| s.text).collect()
    }

    #[test]
    fn every_transaction_control_statement_is_found_in_any_case() {
        for (sql, found) in [
            ("BEGIN", "BEGIN"),
            ("begin work", "BEGIN"),
            (
                "Start Transaction isolation level serializable",
                "START TRANSACTION",
            ),
            ("commit", "COMMIT"),
            ("COMMIT AND CHAIN", "COMMIT"),
            ("end transaction", "END"),
            ("rollback", "ROLLBACK"),
            ("ROLLBACK TO SAVEPOINT a", "ROLLBACK"),
            ("abort", "ABORT"),
            ("savepoint a", "SAVEPOINT"),
            ("release savepoint a", "RELEASE"),
            ("release a", "RELEASE"),
            ("prepare transaction 'x'", "PREPARE TRANSACTION"),
            ("commit prepared 'x'", "COMMIT PREPARED"),
            ("ROLLBACK PREPARED 'x'", "ROLLBACK PREPARED"),
        ] {
            assert_eq!(control(sql), Some(found), "{sql}");
            assert_eq!(
                control(&format!("SELECT 1; {sql}; SELECT 2")),
                Some(found),
                "{sql}"
            );
        }
    }

    #[test]
    fn the_issues_example_is_refused_at_its_commit() {
        assert_eq!(
            control("INSERT INTO t VALUES (10); COMMIT; INSERT INTO t VALUES (11); SELECT 1/0"),
            Some("COMMIT")
        );
    }

    #[test]
    fn ordinary_statements_are_not_transaction_control() {
        for sql in [
            "SELECT 1",
            "DELETE FROM t WHERE ended",
            "PREPARE q AS SELECT 1; EXECUTE q",
            "START",
            "SELECT begin, commit FROM t",
            "UPDATE t SET \"end\" = 1",
            "CALL purge_in_batches()",
            "VACUUM t",
            "",
            "  ;; ",
        ] {
            assert_eq!(control(sql), None, "{sql}");
        }
    }

    #[test]
    fn quotes_and_comments_hide_what_looks_like_a_statement() {
        for sql in [
            "SELECT 'x; COMMIT'",
            "SELECT 'it''s; COMMIT'",
            "SELECT E'a\\'; COMMIT'",
            "SELECT \"a;\"\"COMMIT\" FROM t",
            "SELECT 1 -- ; COMMIT\n",
            "SELECT 1 /* ; COMMIT */",
            "SELECT 1 /* outer /* inner */ ; COMMIT */",
            "DO $$ BEGIN PERFORM 1; COMMIT; END $$",
            "DO $body$ BEGIN RAISE NOTICE '$$'; COMMIT; END $body$",
            "SELECT U&'d\\0061t; commit'",
            "SELECT $1; ",
        ] {
            assert_eq!(control(sql), None, "{sql}");
        }
        // Outside them, it is found.
        assert_eq!(control("SELECT 'x'; COMMIT"), Some("COMMIT"));
        assert_eq!(control("/* c */ commit"), Some("COMMIT"));
        assert_eq!(control("-- note\nBEGIN;"), Some("BEGIN"));
        assert_eq!(control("DO $$ SELECT 1 $$; END"), Some("END"));
    }

    #[test]
    fn a_standard_function_body_ends_no_statement_at_its_semicolons() {
        let sql = "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC \
                   SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END; SELECT a; END; SELECT f(1)";
        assert_eq!(control(sql), None);
        assert_eq!(texts(sql).len(), 2, "{:?}", texts(sql));
        assert_eq!(texts(sql)[1], "SELECT f(1)");
        // A COMMIT after the body is still one.
        assert_eq!(control(&format!("{sql}; COMMIT")), Some("COMMIT"));
    }

    #[test]
    fn statements_split_at_the_semicolons_outside_quotes() {
        assert_eq!(
            texts("SELECT 'a;b'; CALL p() ;\n-- only a comment\n; SELECT 2"),
            vec!["SELECT 'a;b'", "CALL p()", "SELECT 2"]
        );
        assert_eq!(texts("SELECT 1"), vec!["SELECT 1"]);
        assert_eq!(
            texts("CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); COMMIT); SELECT 1"),
            vec!["CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); COMMIT)", "SELECT 1"]
        );
        assert!(texts(" -- nothing\n").is_empty());
    }

    #[test]
    fn an_unterminated_quote_or_comment_runs_to_the_end() {
        assert_eq!(control("SELECT 'open; COMMIT"), None);
        assert_eq!(control("SELECT $$ open; COMMIT"), None);
        assert_eq!(control("SELECT /* open; COMMIT"), None);
        assert_eq!(texts("SELECT 'open; x").len(), 1);
    }
}
