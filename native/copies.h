// Which of two stored copies of one session stands: the row at home against
// one a fallback server held during an outage (the look-aside, recovery.cc),
// and the copies sessionsOf finds on several servers (fanout.cc). kAdoptStmt
// (sql.cc) decides the same in SQL when it moves a copy home.
#pragma once

namespace spg {

// What decides between two copies: a row's times, expiry and version.
struct CopyFacts {
  bool live = false;      // not expired
  long long created = 0;  // sess_created
  long long modified = 0;
  long long expire = 0;  // negative: a tombstone (a logout, a revocation)
  bool versioned = false;
  long long version = 0;
};

// Whether `tombstone` ended the session that `copy` is of: `copy` is live and
// was created no later than the tombstone was written. why: a request that
// read the session before a logout may store it late on a server that missed
// the logout (down then, standing in for home since); its copy keeps the
// session's created time (kWriteCreated), and its version, newer than the
// tombstone's, must not bring the session back.
inline bool Ends(const CopyFacts& tombstone, const CopyFacts& copy) {
  return tombstone.expire < 0 && copy.live && copy.created <= tombstone.modified;
}

// Whether `kept` stands against `other`: a tombstone that ended the other
// copy's session stands; else the newer by version when both have one (an
// equal version is the same write), else (a row PHP wrote, or one from
// before versions) a live copy modified later: a copy written during an
// outage is never older than home's, so a tie goes to the other.
inline bool Keeps(const CopyFacts& kept, const CopyFacts& other) {
  if (Ends(kept, other)) return true;
  if (Ends(other, kept)) return false;
  if (kept.versioned && other.versioned) return kept.version >= other.version;
  return kept.live && kept.modified > other.modified;
}

}  // namespace spg
