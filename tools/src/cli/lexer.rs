//! The shell's lexer: one input line -> statements of [`Token`]s.
//!
//! Rules: tokens are separated by whitespace; `=` and `;` are tokens of their own unless
//! quoted; `;` separates statements on one line; `"..."` is one token with the escapes
//! `\"`, `\\`, `\n`, `\t`, `\r`; a `#` at the start of a statement begins a comment that runs
//! to the end of the line. An unquoted word is taken literally except that `0x..` (an even
//! number of hex digits) means those bytes — see [`Token::bytes`]. Pure functions.

use crate::text::parse_hex;

/// One lexical token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An unquoted word.
    Word(String),
    /// A double-quoted string, escapes resolved.
    Quoted(String),
    /// An unquoted `=`.
    Eq,
}

impl Token {
    /// The bytes this token stands for as a key, column name or value: a quoted string's
    /// UTF-8; a `0x..` word's decoded hex; any other word's UTF-8. `None` for `=`.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            Token::Word(w) => Some(parse_hex(w).unwrap_or_else(|| w.as_bytes().to_vec())),
            Token::Quoted(s) => Some(s.as_bytes().to_vec()),
            Token::Eq => None,
        }
    }

    /// The token as text (a word or quoted string); `None` for `=`.
    pub fn text(&self) -> Option<&str> {
        match self {
            Token::Word(w) | Token::Quoted(w) => Some(w),
            Token::Eq => None,
        }
    }

    /// The unquoted word, lowercased, for matching keywords; `None` otherwise.
    pub fn keyword(&self) -> Option<String> {
        match self {
            Token::Word(w) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    /// How the token was written, for error messages.
    pub fn show(&self) -> String {
        match self {
            Token::Word(w) => w.clone(),
            Token::Quoted(s) => crate::text::quote(s),
            Token::Eq => "=".to_owned(),
        }
    }
}

/// A line the lexer cannot split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LexError {
    /// A `"` without its closing quote.
    #[error("unterminated string starting at column {column}")]
    UnterminatedString {
        /// 1-based column of the opening quote.
        column: usize,
    },
    /// A backslash escape the lexer does not know.
    #[error("unknown escape \\{escape} at column {column}")]
    UnknownEscape {
        /// The character after the backslash.
        escape: char,
        /// 1-based column of the backslash.
        column: usize,
    },
}

/// Splits `line` into statements (separated by `;`), each a non-empty list of tokens.
pub fn lex(line: &str) -> Result<Vec<Vec<Token>>, LexError> {
    let mut statements = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' if current.is_empty() => break,
            ';' => {
                chars.next();
                if !current.is_empty() {
                    statements.push(std::mem::take(&mut current));
                }
            }
            '=' => {
                chars.next();
                current.push(Token::Eq);
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                let mut closed = false;
                while let Some((j, c)) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => {
                            let escaped = match chars.next() {
                                Some((_, '"')) => '"',
                                Some((_, '\\')) => '\\',
                                Some((_, 'n')) => '\n',
                                Some((_, 't')) => '\t',
                                Some((_, 'r')) => '\r',
                                Some((_, other)) => {
                                    return Err(LexError::UnknownEscape {
                                        escape: other,
                                        column: column(line, j),
                                    })
                                }
                                None => break,
                            };
                            s.push(escaped);
                        }
                        c => s.push(c),
                    }
                }
                if !closed {
                    return Err(LexError::UnterminatedString {
                        column: column(line, i),
                    });
                }
                current.push(Token::Quoted(s));
            }
            _ => {
                let mut w = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '=' | ';' | '"') {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                current.push(Token::Word(w));
            }
        }
    }
    if !current.is_empty() {
        statements.push(current);
    }
    Ok(statements)
}

/// 1-based character column of byte offset `at` in `line`.
fn column(line: &str, at: usize) -> usize {
    line.get(..at).map_or(at, |p| p.chars().count()) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Token {
        Token::Word(s.to_owned())
    }

    #[test]
    fn lex_splits_words_assignments_and_quotes() {
        let got = lex(r#"put users alice name="Alice Smith" age=3"#).unwrap();
        assert_eq!(
            got,
            vec![vec![
                w("put"),
                w("users"),
                w("alice"),
                w("name"),
                Token::Eq,
                Token::Quoted("Alice Smith".into()),
                w("age"),
                Token::Eq,
                w("3"),
            ]]
        );
    }

    #[test]
    fn lex_semicolons_separate_statements() {
        let got = lex("ping; tables ;; use t").unwrap();
        assert_eq!(
            got,
            vec![vec![w("ping")], vec![w("tables")], vec![w("use"), w("t")]]
        );
    }

    #[test]
    fn lex_escapes_inside_quotes() {
        let got = lex(r#""a\"b\\c\n" "x;y=z""#).unwrap();
        assert_eq!(
            got,
            vec![vec![
                Token::Quoted("a\"b\\c\n".into()),
                Token::Quoted("x;y=z".into())
            ]]
        );
    }

    #[test]
    fn lex_unterminated_quote_is_error() {
        assert_eq!(
            lex(r#"put k v="abc"#),
            Err(LexError::UnterminatedString { column: 9 })
        );
    }

    #[test]
    fn lex_comment_line_is_empty() {
        assert_eq!(
            lex("  # a comment; ping").unwrap(),
            Vec::<Vec<Token>>::new()
        );
    }

    #[test]
    fn token_bytes_reads_hex_words_only_unquoted() {
        assert_eq!(w("0x00ff").bytes(), Some(vec![0, 0xff]));
        assert_eq!(
            Token::Quoted("0x00ff".into()).bytes(),
            Some(b"0x00ff".to_vec())
        );
        assert_eq!(w("0xabc").bytes(), Some(b"0xabc".to_vec()));
    }
}
