//! The MBR partition table (the four primary entries at offset 446 of sector 0, each 16 bytes:
//! status, CHS start, type, CHS end, first LBA and sector count little-endian; boot signature
//! 0x55 0xAA at offset 510). Raspberry Pi OS images use two primary partitions; extended
//! partitions are not followed.

/// One used primary partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// 1–4.
    pub number: u8,
    /// The partition type byte (0x0c: FAT32 LBA, 0x83: Linux).
    pub kind: u8,
    pub bootable: bool,
    pub first_lba: u32,
    pub sectors: u32,
}

/// The used primary partitions of `sector0`, or why it is not an MBR.
pub fn read(sector0: &[u8]) -> Result<Vec<Partition>, String> {
    if sector0.len() < 512 {
        return Err(format!(
            "{} bytes is shorter than one sector",
            sector0.len()
        ));
    }
    if sector0[510..512] != [0x55, 0xAA] {
        return Err("no MBR boot signature (0x55AA at offset 510)".into());
    }
    let le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    Ok((0..4u8)
        .filter_map(|i| {
            let e = &sector0[446 + 16 * usize::from(i)..446 + 16 * usize::from(i) + 16];
            let p = Partition {
                number: i + 1,
                kind: e[4],
                bootable: e[0] == 0x80,
                first_lba: le(&e[8..12]),
                sectors: le(&e[12..16]),
            };
            (p.kind != 0 && p.sectors != 0).then_some(p)
        })
        .collect())
}

/// A sector 0 with `parts` (kind, first LBA, sectors) as primary partitions: for tests and
/// tools that build images.
pub fn write(parts: &[(u8, u32, u32)]) -> [u8; 512] {
    let mut s = [0u8; 512];
    for (i, &(kind, first, sectors)) in parts.iter().take(4).enumerate() {
        let e = &mut s[446 + 16 * i..446 + 16 * i + 16];
        e[4] = kind;
        e[8..12].copy_from_slice(&first.to_le_bytes());
        e[12..16].copy_from_slice(&sectors.to_le_bytes());
    }
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let s = write(&[(0x0c, 8192, 1_048_576), (0x83, 1_056_768, 4_000_000)]);
        let p = read(&s).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0],
            Partition {
                number: 1,
                kind: 0x0c,
                bootable: false,
                first_lba: 8192,
                sectors: 1_048_576
            }
        );
        assert_eq!(p[1].kind, 0x83);
        assert!(read(&[0u8; 512]).unwrap_err().contains("signature"));
        assert!(read(&[0u8; 10]).is_err());
    }
}
