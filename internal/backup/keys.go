package backup

import (
	"path"
	"regexp"
	"strings"
	"time"
)

// Object keys:
//
//	postgres/<db>/<YYYY>/<MM>/<DD>/<db>-<YYYYMMDDTHHMMSSZ>.dump       the dump
//	postgres/<db>/<YYYY>/<MM>/<DD>/<db>-<YYYYMMDDTHHMMSSZ>.dump.json  its manifest
//	postgres/<db>/.incomplete/<db>-<YYYYMMDDTHHMMSSZ>-<hex>.dump      the older layout's temporary upload
//
// A dump uploads straight to its key as a multipart upload, invisible until
// completed. The older layout uploaded under .incomplete/ and copied the
// result to its key; Prune still removes what that left behind.
//
// The timestamp in the key is the dump time Prune and List go by. S3's
// LastModified cannot be set by a client (so tests could not fake ages) and
// changes when an object is copied or migrated between buckets; the key
// keeps the time the dump was taken.

const (
	keyRoot       = "postgres/"
	incompleteDir = ".incomplete/"
	dumpExt       = ".dump"
	manifestExt   = ".json"
	stampLayout   = "20060102T150405Z"
)

var keyNameRE = regexp.MustCompile(`^(.+)-(\d{8}T\d{6}Z)(?:-[0-9a-f]{8})?\.dump$`)

// keyDB makes a database name safe as one key segment. Names are
// identifiers, so this only matters for the odd quoted name with a slash or
// space in it.
func keyDB(db string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
			return r
		}
		return '_'
	}, db)
}

func dbPrefix(db string) string { return keyRoot + keyDB(db) + "/" }

func dumpKey(db string, t time.Time) string {
	t = t.UTC()
	return dbPrefix(db) + t.Format("2006/01/02/") + keyDB(db) + "-" + t.Format(stampLayout) + dumpExt
}

func manifestKey(dumpKey string) string { return dumpKey + manifestExt }

// keyKind sorts the keys under a database's prefix.
type keyKind int

const (
	kindOther keyKind = iota // not ours: never touched
	kindDump
	kindManifest
	kindIncomplete
)

// parseKey says what key is and when its dump was taken. db is the
// database the caller listed, so a stray file of another name under the
// prefix counts as kindOther.
func parseKey(db, key string) (keyKind, time.Time) {
	rest, ok := strings.CutPrefix(key, dbPrefix(db))
	if !ok {
		return kindOther, time.Time{}
	}
	kind := kindDump
	switch {
	case strings.HasPrefix(rest, incompleteDir):
		kind = kindIncomplete
		rest = strings.TrimPrefix(rest, incompleteDir)
		if strings.Contains(rest, "/") {
			return kindOther, time.Time{}
		}
	case strings.HasSuffix(rest, dumpExt+manifestExt):
		kind = kindManifest
		rest = strings.TrimSuffix(rest, manifestExt)
	}
	m := keyNameRE.FindStringSubmatch(path.Base(rest))
	if m == nil || m[1] != keyDB(db) {
		return kindOther, time.Time{}
	}
	t, err := time.Parse(stampLayout, m[2])
	if err != nil {
		return kindOther, time.Time{}
	}
	if kind != kindIncomplete && rest != strings.TrimPrefix(dumpKey(db, t), dbPrefix(db)) {
		// A dump filed under the wrong date directory is not one we wrote.
		return kindOther, time.Time{}
	}
	return kind, t
}
