package lfs

// ValidOID reports whether oid is an LFS object id as the gate accepts it:
// exactly 64 lowercase hexadecimal digits (a SHA-256). Nothing else is ever
// used in a path.
func ValidOID(oid string) bool {
	if len(oid) != 64 {
		return false
	}
	for i := 0; i < len(oid); i++ {
		c := oid[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
