//! Just enough of the ONNX protobuf to list a model's operators: ModelProto field 7 is its
//! graph, GraphProto field 1 its nodes, NodeProto field 4 a node's `op_type` and field 7 its
//! `domain`. Nothing else is decoded; a malformed model reads as having no such node
//! (ONNX Runtime loaded it already, so it is well formed).

/// Whether the main graph of the ONNX model `model` has a node `op_type` of `domain`.
pub(super) fn has_node(model: &[u8], op_type: &str, domain: &str) -> bool {
    let mut found = false;
    for_each_field(model, |field, value| {
        if let (7, Field::Bytes(graph)) = (field, value) {
            for_each_field(graph, |field, value| {
                if let (1, Field::Bytes(node)) = (field, value) {
                    let (mut op, mut dom) = (&[][..], &[][..]);
                    for_each_field(node, |field, value| match (field, value) {
                        (4, Field::Bytes(b)) => op = b,
                        (7, Field::Bytes(b)) => dom = b,
                        _ => {}
                    });
                    found |= op == op_type.as_bytes() && dom == domain.as_bytes();
                }
            });
        }
    });
    found
}

enum Field<'a> {
    Bytes(&'a [u8]),
    Other,
}

fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Calls `f` with each top-level field of the message `b` (number, and its bytes when
/// length-delimited); stops at the first malformed field.
fn for_each_field<'a>(b: &'a [u8], mut f: impl FnMut(u64, Field<'a>)) {
    let mut at = 0;
    while at < b.len() {
        let Some(key) = varint(b, &mut at) else { return };
        let value = match key & 7 {
            0 => varint(b, &mut at).map(|_| Field::Other),
            1 => b.get(at..at + 8).map(|_| at += 8).map(|()| Field::Other),
            2 => varint(b, &mut at).and_then(|n| usize::try_from(n).ok()).and_then(|n| {
                let v = b.get(at..at.checked_add(n)?)?;
                at += n;
                Some(Field::Bytes(v))
            }),
            5 => b.get(at..at + 4).map(|_| at += 4).map(|()| Field::Other),
            _ => None,
        };
        match value {
            Some(v) => f(key >> 3, v),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_field(field: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![(field << 3) | 2];
        let mut n = body.len();
        while n >= 0x80 {
            v.push((n as u8) | 0x80);
            n >>= 7;
        }
        v.push(n as u8);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn finds_a_node_by_type_and_domain_in_the_main_graph() {
        let node = [len_field(4, b"GroupQueryAttention"), len_field(7, b"com.microsoft")].concat();
        let other = len_field(4, b"MatMul");
        let graph = [len_field(1, &other), vec![0x10, 0x96, 0x01], len_field(1, &node)].concat();
        let model = [vec![0x08, 0x0a], len_field(7, &graph)].concat();
        assert!(has_node(&model, "GroupQueryAttention", "com.microsoft"));
        assert!(!has_node(&model, "GroupQueryAttention", ""));
        assert!(!has_node(&model, "Concat", ""));
        assert!(has_node(&model, "MatMul", ""));
        // Truncated or garbage input: no node, no panic.
        assert!(!has_node(&model[..model.len() - 3], "GroupQueryAttention", "com.microsoft"));
        assert!(!has_node(&[0xff; 12], "MatMul", ""));
    }
}
