// Which servers a session id belongs to, best first. The first live server in
// that order is the session's home; the rest are its fallbacks.
//
// Plain data, no I/O; safe to use from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace spg {

class Placement {
 public:
  enum class Mode {
    kRendezvous,  // highest-random-weight hashing over each server's identity
    kPhp,         // the original's Σbytes(id) mod N over list positions
    kFailover,    // list order for every id
  };

  // `identities` are the servers' stable identities in list order.
  Placement(Mode mode, const std::vector<std::string>& identities);

  // Fills `order` with every server index, best first.
  void Order(std::string_view id, std::vector<int>* order) const;

 private:
  Mode mode_;
  std::vector<uint64_t> seeds_;  // one per server: a hash of its identity
};

// 64-bit FNV-1a followed by a murmur3 finaliser, so nearby ids spread well.
uint64_t Hash64(std::string_view bytes);
uint64_t Mix64(uint64_t x);

}  // namespace spg
