//! Nix formats behind one small module, so moving to another crate (such as
//! nix-compat once it can be had) is a one-file change.

/// Nix's base32 alphabet and bit order, as in store paths and
/// `nix-hash --base32`.
pub fn to_nix_base32(bytes: &[u8]) -> String {
    nix_base32::to_nix_base32(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_nix_for_known_values() {
        // `nix-hash --type sha256 --to-base32` of the sha256 of "" (hex
        // e3b0c442…b855) is 0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73.
        let empty = [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
            0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
            0x78, 0x52, 0xb8, 0x55,
        ];
        assert_eq!(
            to_nix_base32(&empty),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
    }
}
