// The version clock: the order of a session's writes is the order in which
// they were issued, not the order in which some server ran them. Every write
// (and tombstone) carries a version; a read moves the clock past what it saw.
//
// Thread: any (one atomic clock per process, shared by worker threads).
#pragma once

#include <libpq-fe.h>

namespace spg {

// A version greater than every one this process issued or observed before.
long long NextVersion();

// Moves the clock past the version in cell (row, col) of `r`, if any.
void ObserveVersion(const PGresult* r, int row, int col);

}  // namespace spg
