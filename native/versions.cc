#include "versions.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>

#include "results.h"

namespace spg {

namespace {

// A version is (microseconds of Unix time when issued) << kTagBits | (this
// process's tag). One clock per process (worker threads included): each
// version is greater than every one this process issued or read before, so
// within a process the order is exact whatever the wall clock does; the tag
// keeps two processes from issuing the same value in the same microsecond
// (unless they drew the same tag, 1 in 2048). 52 bits of microseconds last
// until the year 2112.
constexpr int kTagBits = 11;
// The greatest version the clock may be moved to: one more still fits in 63 bits.
constexpr long long kMaxVersion = (((1LL << 52) - 1) << kTagBits) - 1;
std::atomic<long long> version_clock{0};

long long Tag() {
  static const long long tag = std::random_device{}() & ((1LL << kTagBits) - 1);
  return tag;
}

}  // namespace

long long NextVersion() {
  const long long now = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  long long seen = version_clock.load(std::memory_order_relaxed);
  for (;;) {
    const long long version = (std::max(now, (seen >> kTagBits) + 1) << kTagBits) | Tag();
    if (version_clock.compare_exchange_weak(seen, version, std::memory_order_relaxed)) {
      return version;
    }
  }
}

// why: a write issued after reading a session must order after what was read
// even when the host that wrote it has a clock ahead of ours (a hybrid logical
// clock). Values beyond the format's range (set by hand) are ignored rather
// than overflow.
void ObserveVersion(const PGresult* r, int row, int col) {
  if (row >= PQntuples(r) || PQgetisnull(r, row, col)) return;
  const long long version = ParseInt(r, row, col);
  if (version <= 0 || version > kMaxVersion) return;
  long long seen = version_clock.load(std::memory_order_relaxed);
  while (version > seen &&
         !version_clock.compare_exchange_weak(seen, version, std::memory_order_relaxed)) {
  }
}

}  // namespace spg
