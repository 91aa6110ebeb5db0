#include "placement.h"

#include <algorithm>
#include <numeric>

namespace spg {

uint64_t Mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

uint64_t Hash64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return Mix64(h);
}

Placement::Placement(Mode mode, const std::vector<std::string>& identities) : mode_(mode) {
  seeds_.reserve(identities.size());
  for (const std::string& identity : identities) seeds_.push_back(Hash64(identity));
}

void Placement::Order(std::string_view id, std::vector<int>* order) const {
  const int n = static_cast<int>(seeds_.size());
  order->resize(n);
  std::iota(order->begin(), order->end(), 0);
  if (n <= 1 || mode_ == Mode::kFailover) return;

  if (mode_ == Mode::kPhp) {
    // The original summed the id's bytes as C chars; ids are ASCII, so unsigned
    // and signed sums agree. Fallbacks follow the list cyclically from the home.
    uint64_t sum = 0;
    for (unsigned char c : id) sum += c;
    std::rotate(order->begin(), order->begin() + static_cast<long>(sum % n), order->end());
    return;
  }

  // Rendezvous: each server scores the id; the ranking only depends on the
  // servers' identities, so reordering the list changes nothing and a new
  // server takes over only the ids it now scores highest on (~1/N of them).
  const uint64_t key = Hash64(id);
  std::vector<uint64_t> scores(n);
  for (int i = 0; i < n; ++i) scores[i] = Mix64(key ^ seeds_[i]);
  std::sort(order->begin(), order->end(),
            [&](int a, int b) { return scores[a] != scores[b] ? scores[a] > scores[b] : a < b; });
}

}  // namespace spg
