// Outage recovery: sessions written on a fallback server while their home was
// down are looked for there (look-aside), moved home, and their stale copies
// dropped; a destroy leaves tombstones where a row could come back.
#include "handler.h"

#include <algorithm>
#include <iterator>
#include <memory>
#include <utility>

#include "copies.h"
#include "results.h"
#include "versions.h"

namespace spg {

namespace {

// kAdoptStmt for session `id` and the row a kFetchStmt returned (row 0 of `r`):
// the id, then the fetched columns as they are.
Statement AdoptStatement(const std::string& id, const PGresult* r) {
  Statement insert = Statement::Prepared(kAdoptStmt);
  insert.Bind(id);
  for (int col = 0; col < kFetchColumns; ++col) {
    if (PQgetisnull(r, 0, col)) {
      insert.BindNull();
    } else {
      insert.Bind(Text(r, 0, col));
    }
  }
  return insert;
}

// Row `row` of a read (kReadStmt), found there.
CopyFacts ReadFacts(const PGresult* r, int row) {
  CopyFacts f;
  f.live = PQgetvalue(r, row, kReadExpired)[0] != 't';
  f.created = ParseInt(r, row, kReadCreated);
  f.modified = ParseInt(r, row, kReadModified);
  f.expire = ParseInt(r, row, kReadExpire);
  f.versioned = !PQgetisnull(r, row, kReadVersion);
  f.version = ParseInt(r, row, kReadVersion);
  return f;
}

// Row 0 of a fetch (kFetchStmt), which finds live rows and tombstones only.
CopyFacts FetchedFacts(const PGresult* r) {
  CopyFacts f;
  f.expire = ParseInt(r, 0, kFetchExpire);
  f.live = f.expire >= 0;
  f.created = ParseInt(r, 0, kFetchCreated);
  f.modified = ParseInt(r, 0, kFetchModified);
  f.versioned = !PQgetisnull(r, 0, kFetchVersion);
  f.version = ParseInt(r, 0, kFetchVersion);
  return f;
}

}  // namespace

bool Handler::Recovering(const Server* home) const {
  return servers_.size() > 1 && home->recovered_at() > 0 &&
         NowSeconds() - home->recovered_at() < static_cast<double>(max_lifetime_);
}

std::vector<Server*> Handler::Fallbacks(const std::string& id, const Server* home) {
  placement_->Order(id, &order_);
  std::vector<Server*> after;
  bool past_home = false;
  for (int i : order_) {
    if (past_home && servers_[i]->routable()) after.push_back(servers_[i].get());
    past_home = past_home || i == home->index();
  }
  return after;
}

void Handler::LookAside(Server* home, std::string id, Deferred deferred, ResultPtr at_home,
                        int home_row, std::vector<Server*> fallbacks, size_t next) {
  if (next == fallbacks.size()) {
    deferred.Resolve(BuildRow(deferred.Env(), at_home.get(), home_row, home->index()));
    return;
  }
  Server* other = fallbacks[next];
  auto fetch = std::make_unique<Op>();
  fetch->statements.push_back(Statement::Prepared(kFetchStmt).Bind(id));
  fetch->done = [this, home, other, id, deferred, at_home, home_row, fallbacks, next](Op& op) {
    const PGresult* r = op.error ? nullptr : op.results[0].get();
    if (r == nullptr || PQntuples(r) == 0) {  // not there (or unreachable): try the next
      LookAside(home, id, deferred, at_home, home_row, fallbacks, next + 1);
      return;
    }
    ObserveVersion(r, 0, kFetchVersion);
    // Which of the two rows stands: see Keeps (copies.h).
    const PGresult* h = at_home.get();
    if (Found(h, home_row) && Keeps(ReadFacts(h, home_row), FetchedFacts(r))) {
      DropCopies(id, {other}, [] {});  // a stale copy: home was written since
      LookAside(home, id, deferred, at_home, home_row, fallbacks, next + 1);
      return;
    }
    // Store the row at home and read it back in the same transaction, then
    // drop the copy. kAdoptStmt takes the id, then the fetched row as it is.
    auto adopt = std::make_unique<Op>();
    adopt->statements.push_back(AdoptStatement(id, r));
    adopt->statements.push_back(Statement::Prepared(kReadStmt).Bind(id));
    adopt->done = [this, other, id, deferred](Op& op) {
      if (op.error) {
        deferred.Reject(JsError(deferred.Env(), op.error));
        return;
      }
      ResultPtr row = op.results[1];
      const int server = op.server;
      DropCopies(id, {other}, [this, deferred, row, server] {
        deferred.Resolve(BuildRow(deferred.Env(), row.get(), 0, server));
      });
    };
    Submit(home, std::move(adopt));
  };
  Submit(other, std::move(fetch));
}

void Handler::DropCopies(const std::string& id, const std::vector<Server*>& servers,
                         std::function<void()> then) {
  auto remaining = std::make_shared<size_t>(servers.size() + 1);
  auto step = [remaining, then] {
    if (--*remaining == 0) then();
  };
  for (Server* server : servers) {
    auto drop = std::make_unique<Op>();
    drop->statements.push_back(Statement::Prepared(kDestroyStmt).Bind(id));
    drop->batchable = true;
    drop->done = [step](Op&) { step(); };
    Submit(server, std::move(drop));
  }
  step();
}

void Handler::AdoptTombstone(Server* home, std::string id, std::vector<Server*> fallbacks,
                             size_t next, std::function<void()> then) {
  if (next == fallbacks.size()) {
    then();
    return;
  }
  Server* other = fallbacks[next];
  auto fetch = std::make_unique<Op>();
  fetch->statements.push_back(Statement::Prepared(kFetchStmt).Bind(id));
  fetch->done = [this, home, id, fallbacks, next, then](Op& op) {
    const PGresult* r = op.error ? nullptr : op.results[0].get();
    const bool tombstone = r != nullptr && PQntuples(r) > 0 && !PQgetisnull(r, 0, kFetchExpire) &&
                           ParseInt(r, 0, kFetchExpire) < 0;
    if (!tombstone) {  // none there (or unreachable): try the next
      AdoptTombstone(home, id, fallbacks, next + 1, then);
      return;
    }
    ObserveVersion(r, 0, kFetchVersion);
    // kAdoptStmt keeps home's row where it is newer; the copy stays for the
    // write's DropCopies (or a later read's look-aside) to settle. Whatever
    // the outcome, the write goes on: an error here fails no write.
    auto adopt = std::make_unique<Op>();
    adopt->statements.push_back(AdoptStatement(id, r));
    adopt->key = id;
    adopt->done = [then](Op&) { then(); };
    Submit(home, std::move(adopt));
  };
  Submit(other, std::move(fetch));
}

Napi::Value Handler::DestroyEverywhere(Napi::Env env, const std::string& id, Server* home,
                                       bool logout) {
  // A session may live on a fallback server (written there during an outage),
  // so it is deleted from every server that is up; the home server decides the
  // outcome, the others are best effort. When the id's own home is down, the
  // server standing in for it keeps a tombstone instead, so the row the home
  // still has cannot come back when it returns. So does a server where this
  // process gave up on a write of the session lately: that write may still
  // run there late (a stalled connection, a healed partition), and with no
  // row to lose to it would store the session again.
  placement_->Order(id, &order_);
  const bool home_down = servers_[order_.front()].get() != home;
  std::vector<Server*> targets;
  std::vector<int> missing;  // a logout's: the servers it cannot reach now
  for (auto& server : servers_) {
    if (server.get() == home || server->routable()) {
      targets.push_back(server.get());
    } else if (logout) {
      missing.push_back(server->index());
    }
  }
  size_t records = 0;
  for (Server* server : targets) records += !missing.empty() && server->keeps_records();
  auto removed = std::make_shared<bool>(false);
  auto join = NewJoin(env, targets.size() + records,
                      [removed](Napi::Env env) { return Napi::Boolean::New(env, *removed); });
  const long long issued = NextVersion();
  const std::string version = std::to_string(issued);
  // why: a server that misses a logout may hold a live copy of the session
  // (written there while it stood in for home), and nothing else would give it
  // a tombstone: the logout is recorded on every server that is up, so that
  // it runs there before it is up again in any process (records.cc). Unlike a
  // revocation it is not kept in this process's memory as well. why: logouts
  // during an outage are many (every user's), and memory would grow with the
  // outage; a server that returns while every server keeping the record is
  // down goes without it, and the created rule (copies.h) ends a copy it
  // takes then once home is back.
  Missed missed;
  missed.logout = true;
  missed.subject = id;
  missed.version = issued;
  for (Server* server : targets) {
    auto op = std::make_unique<Op>();
    const bool is_home = server == home;
    if (logout) {
      op->statements.push_back(Statement::Prepared(kLogoutStmt).Bind(id).Bind(version));
    } else if ((is_home && home_down) || MayRunLate(id, server->index())) {
      op->statements.push_back(Statement::Prepared(kTombstoneStmt).Bind(id).Bind(version));
    } else {
      op->statements.push_back(Statement::Prepared(kDestroyStmt).Bind(id));
    }
    op->key = id;
    op->reroutable = is_home;
    op->batchable = true;
    const int target = server->index();
    op->done = [this, join, removed, is_home, logout, missed, target](Op& op) {
      if (!op.error && AffectedRows(op.results[0].get()) > 0) *removed = true;
      // A logout that did not run there (failed, or resent elsewhere) with
      // the server lost meanwhile: as for one down at the call, but the
      // record comes after (only then is it one more round trip).
      if (logout && (op.error || op.server != target) &&
          servers_[target]->state() != Server::State::kUp) {
        ++join->remaining;
        Record(missed, {target}, Holders(servers_[target].get()),
               [this, join](bool) { StepDone(join, {}); });
      }
      StepDone(join, is_home ? op.error : ErrorInfo{});
    };
    Submit(server, std::move(op));
    if (missing.empty() || !server->keeps_records()) continue;  // as counted above
    // The record follows the logout on the same connection (same key), in
    // the same write batch when batches are on, after its tombstone (whose
    // lifetime it takes). Its own op: a failure (the table dropped since
    // setup) fails the record alone, and the logout's resend to another
    // server (home's) never carries a statement that server may not take.
    auto record = std::make_unique<Op>();
    record->statements.push_back(RecordStatement(missed, missing));
    record->key = id;
    record->batchable = true;
    record->done = [this, join](Op&) { StepDone(join, {}); };
    Submit(server, std::move(record));
  }
  return join->deferred.Promise();
}

void Handler::GaveUp(const std::string& id, int server) {
  const double now = NowSeconds();
  const uint64_t bit = server < 64 ? uint64_t{1} << server : ~uint64_t{0};
  auto [at, fresh] = gave_up_.try_emplace(id, GaveUpOn{0, now});
  if (!fresh && now - at->second.at >= static_cast<double>(max_lifetime_)) at->second.servers = 0;
  at->second.servers |= bit;
  at->second.at = now;
  if (gave_up_.size() < prune_gave_up_at_) return;
  for (auto it = gave_up_.begin(); it != gave_up_.end();) {
    it = now - it->second.at >= static_cast<double>(max_lifetime_) ? gave_up_.erase(it)
                                                                      : std::next(it);
  }
  prune_gave_up_at_ = std::max<size_t>(1024, 2 * gave_up_.size());
}

bool Handler::MayRunLate(const std::string& id, int server) const {
  auto it = gave_up_.find(id);
  if (it == gave_up_.end()) return false;
  if (NowSeconds() - it->second.at >= static_cast<double>(max_lifetime_)) return false;
  return (it->second.servers & (server < 64 ? uint64_t{1} << server : ~uint64_t{0})) != 0;
}

}  // namespace spg
