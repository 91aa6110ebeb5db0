// Small readers of PGresult cells and the clock, shared by the handler, the
// servers and housekeeping. Header-only; plain C++, any thread.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "sql.h"

namespace spg {

// An integer cell; NULL reads as 0 (as the PHP extension read it).
inline long long ParseInt(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return 0;
  return std::strtoll(PQgetvalue(r, row, col), nullptr, 10);
}

// A text cell; NULL reads as "".
inline std::string Text(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return "";
  return std::string(PQgetvalue(r, row, col), PQgetlength(r, row, col));
}

// Rows an INSERT/UPDATE/DELETE affected.
inline long long AffectedRows(const PGresult* r) {
  const char* n = PQcmdTuples(const_cast<PGresult*>(r));
  return n && *n ? std::strtoll(n, nullptr, 10) : 0;
}

// Whether row `row` of a read's result holds a stored session: a merged read
// has a row for every id, null where there is none.
inline bool Found(const PGresult* r, int row) {
  return row < PQntuples(r) && !PQgetisnull(r, row, kReadExpired);
}

inline double NowSeconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

}  // namespace spg
