/// A plain-text table for terminal reports: columns two spaces apart, padded to their widest cell;
/// the columns in `leftAligned` flush left (names), the others right (numbers). One line per row,
/// the first row being the header.
func textTable(_ rows: [[String]], leftAligned: Set<Int>) -> [String] {
    guard let first = rows.first else { return [] }
    let widths = first.indices.map { i in rows.map { $0[i].count }.max()! }
    return rows.map { row in
        row.enumerated().map { i, cell in
            let pad = String(repeating: " ", count: widths[i] - cell.count)
            return leftAligned.contains(i) ? cell + pad : pad + cell
        }.joined(separator: "  ")
    }
}
