import CDCCore
import Foundation

/// `<prefix>-<UTC yyyyMMddHHmmss>-<random hex>`: the ID of a repair, check or reconcile run, sortable
/// by start time, unique enough for runs started in the same second.
func sortableRunID(_ prefix: String, now: Date = Date()) -> String {
    let stamp = CivilTime.timestampString(micros: Int64(now.timeIntervalSince1970 * 1_000_000)).prefix(19).filter(\.isNumber)
    return "\(prefix)-\(stamp)-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
}
