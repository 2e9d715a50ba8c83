// SPDX-License-Identifier: GPL-2.0

//! Little-endian integers at an offset of a byte slice, `None` when the
//! slice is too short (hostile input: no panic, no wrap-around).

/// The `u16` at `off`.
pub fn le16(b: &[u8], off: usize) -> Option<u16> {
    let bytes = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes(bytes.try_into().ok()?))
}

/// The `u32` at `off`.
pub fn le32(b: &[u8], off: usize) -> Option<u32> {
    let bytes = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// The `u64` at `off`.
pub fn le64(b: &[u8], off: usize) -> Option<u64> {
    let bytes = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}
