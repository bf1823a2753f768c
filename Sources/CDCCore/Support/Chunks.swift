extension Array {
    /// Consecutive slices of at most `size` elements, in order (the last one may be shorter).
    public func chunks(of size: Int) -> [ArraySlice<Element>] {
        precondition(size > 0, "chunk size must be positive")
        return stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
