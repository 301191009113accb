//! A compact, exactly reversible form of the JSON openmls stores: each array
//! of small integers (`[115,104,97]`, how serde_json writes bytes, about 3.6
//! characters a byte) becomes its bytes behind a marker. MLS state shrinks to
//! about a third, and the store's keys (which repeat the group id as such an
//! array) to a quarter.
//!
//! The form: [`MARK`], then a LEB128 length `n`; `n = 0` stands for one
//! literal `MARK` byte, `n > 0` for an array of the next `n` bytes written
//! as decimal integers. Every other byte stands for itself. JSON is UTF-8, in
//! which `MARK` never occurs, so [`expand`] is the identity on plain JSON:
//! state written before this form existed reads back unchanged.

/// Starts a token; never a byte of UTF-8 text.
const MARK: u8 = 0xFF;

/// The compact form of `text` (any bytes; JSON gains the most).
pub fn compact(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut bytes = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'[' => match byte_array(&text[i..], &mut bytes) {
                Some(used) => {
                    out.push(MARK);
                    push_len(&mut out, bytes.len());
                    out.extend_from_slice(&bytes);
                    i += used;
                }
                None => {
                    out.push(b'[');
                    i += 1;
                }
            },
            MARK => {
                out.extend_from_slice(&[MARK, 0]);
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The text that [`compact`] made `stored` from; `None` if `stored` is not
/// such a form (a token cut short).
pub fn expand(stored: &[u8]) -> Option<Vec<u8>> {
    if !stored.contains(&MARK) {
        return Some(stored.to_vec());
    }
    let mut out = Vec::with_capacity(stored.len() * 3);
    let mut i = 0;
    while i < stored.len() {
        if stored[i] != MARK {
            out.push(stored[i]);
            i += 1;
            continue;
        }
        let (n, used) = read_len(&stored[i + 1..])?;
        i += 1 + used;
        if n == 0 {
            out.push(MARK);
            continue;
        }
        let bytes = stored.get(i..i.checked_add(n)?)?;
        out.push(b'[');
        for (j, b) in bytes.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            push_decimal(&mut out, *b);
        }
        out.push(b']');
        i += n;
    }
    Some(out)
}

/// If `text` starts with a non-empty array of integers 0..=255 written as
/// serde_json writes them (no spaces, no leading zeros), puts them in
/// `bytes` and returns the array's length in characters.
fn byte_array(text: &[u8], bytes: &mut Vec<u8>) -> Option<usize> {
    bytes.clear();
    let mut i = 1;
    loop {
        let start = i;
        let mut value: u32 = 0;
        while let Some(d @ b'0'..=b'9') = text.get(i) {
            value = value * 10 + u32::from(d - b'0');
            i += 1;
            if i - start > 3 {
                return None;
            }
        }
        let digits = i - start;
        if digits == 0 || (digits > 1 && text[start] == b'0') || value > 255 {
            return None;
        }
        bytes.push(value as u8);
        match text.get(i) {
            Some(b',') => i += 1,
            Some(b']') => return Some(i + 1),
            _ => return None,
        }
    }
}

fn push_decimal(out: &mut Vec<u8>, b: u8) {
    if b >= 100 {
        out.push(b'0' + b / 100);
    }
    if b >= 10 {
        out.push(b'0' + (b / 10) % 10);
    }
    out.push(b'0' + b % 10);
}

fn push_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn read_len(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut n: usize = 0;
    for (i, b) in bytes.iter().enumerate().take(5) {
        n |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &[u8]) -> Vec<u8> {
        let c = compact(text);
        assert_eq!(expand(&c).as_deref(), Some(text), "{text:?}");
        c
    }

    #[test]
    fn json_byte_arrays_shrink_and_everything_comes_back_exactly() {
        let json = serde_json::to_vec(&serde_json::json!({
            "value": {"vec": (0..=255u8).collect::<Vec<_>>()},
            "n": [256, 1, 2],
            "lead": [0, 1, 10, 100, 255],
            "text": "a [1,2] in a string, ÿ",
            "empty": [],
            "nested": [[1, 2], [3]],
        }))
        .expect("json");
        let c = round_trip(&json);
        assert!(c.len() * 2 < json.len(), "{} -> {}", json.len(), c.len());
        // What serde_json never writes stays as it is.
        for odd in [
            &b"[01,2]"[..],
            b"[1, 2]",
            b"[1,2",
            b"[",
            b"[1000]",
            b"[1,]",
            b"[-1]",
            &[MARK, 0, MARK, b'[', b'1', b']', 0x80],
        ] {
            round_trip(odd);
        }
        // Plain JSON reads back as it is (state written before this form).
        assert_eq!(expand(&json).as_deref(), Some(&json[..]));
        // A token cut short is not a form.
        assert_eq!(expand(&[MARK]), None);
        assert_eq!(expand(&[MARK, 3, 1, 2]), None);
        assert_eq!(expand(&[MARK, 0x80, 0x80, 0x80, 0x80, 0x80]), None);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_come_back_exactly(text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            proptest::prop_assert_eq!(expand(&compact(&text)), Some(text));
        }

        #[test]
        fn any_json_byte_arrays_come_back_exactly(arrays in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..8)) {
            let text = serde_json::to_vec(&arrays).expect("json");
            proptest::prop_assert_eq!(expand(&compact(&text)), Some(text));
        }
    }

    #[test]
    fn long_arrays_take_a_longer_length() {
        let text = serde_json::to_vec(&vec![7u8; 300]).expect("json");
        let c = round_trip(&text);
        assert_eq!(c.len(), 1 + 2 + 300);
    }
}
