// Durable records of what a server missed: a revocation of a user's sessions
// (destroySessionsOf) or a logout that could not reach a server is recorded on
// the servers that were up (Sql::records_table), and replayed on the server
// that missed it before it is up again, in whichever process opens it or sees
// it return (Server::BeforeUp); the records are then dropped. The GC timer and
// gc() sweep what is left for servers that are up (docs/operations.md, A
// user's sessions).
#include "handler.h"

#include <algorithm>
#include <memory>
#include <set>
#include <tuple>
#include <utility>

#include "results.h"

namespace spg {

// A record read back from the server that keeps it.
struct Held {
  Server* holder = nullptr;
  int target = -1;
  std::string identity;  // the target's, as stored
  Missed missed;
};

namespace {

// The rows of Sql::records_for as records held by `holder`; `target_of` maps
// an identity to a server index (-1: none of ours).
template <typename TargetOf>
std::vector<Held> ReadHeld(const PGresult* r, Server* holder, TargetOf target_of) {
  std::vector<Held> out;
  for (int i = 0; i < PQntuples(r); ++i) {
    Held h;
    h.holder = holder;
    h.identity = Text(r, i, kRecordTarget);
    h.target = target_of(h.identity);
    h.missed.logout = Text(r, i, kRecordKind) == kRecordLogout;
    h.missed.subject = Text(r, i, kRecordSubject);
    h.missed.version = ParseInt(r, i, kRecordVersion);
    h.missed.spared = Text(r, i, kRecordSpared);
    if (!PQgetisnull(r, i, kRecordBefore)) h.missed.before = ParseInt(r, i, kRecordBefore);
    out.push_back(std::move(h));
  }
  return out;
}

// What tells two records apart (the key of the records table but its table
// and target).
std::tuple<bool, std::string, long long, std::string> KeyOf(const Missed& m) {
  return {m.logout, m.subject, m.version, m.spared};
}

}  // namespace

Statement Handler::Replay(const Missed& m) {
  if (m.logout) {
    return std::move(
        Statement::Prepared(kLogoutStmt).Bind(m.subject).Bind(std::to_string(m.version)));
  }
  Statement s = Statement::Prepared(kRevokeStmt);
  s.Bind(m.subject).Bind(m.spared).Bind(std::to_string(m.version));
  if (m.before) {
    s.Bind(std::to_string(*m.before));
  } else {
    s.BindNull();
  }
  return s;
}

Statement Handler::RecordStatement(const Missed& m, const std::vector<int>& targets) const {
  std::vector<std::string> identities;
  for (int t : targets) identities.push_back(servers_[t]->spec().identity);
  if (m.logout) {
    return std::move(Statement::Text(sql_->record_logout)
                         .Bind(table_)
                         .Bind(TextArray(identities))
                         .Bind(m.subject)
                         .Bind(std::to_string(m.version)));
  }
  Statement s = Statement::Text(sql_->record_revoke);
  s.Bind(table_).Bind(TextArray(identities)).Bind(m.subject).Bind(m.spared);
  s.Bind(std::to_string(m.version));
  if (m.before) {
    s.Bind(std::to_string(*m.before));
  } else {
    s.BindNull();
  }
  return s;
}

void Handler::Record(const Missed& missed, const std::vector<int>& targets,
                     const std::vector<Server*>& holders, std::function<void(bool)> then) {
  struct State {
    size_t remaining;
    bool stored = false;
    std::function<void(bool)> then;
  };
  std::vector<Server*> keeping;
  for (Server* h : holders) {
    if (h->keeps_records()) keeping.push_back(h);
  }
  if (keeping.empty()) {
    then(false);
    return;
  }
  auto state = std::make_shared<State>(State{keeping.size(), false, std::move(then)});
  for (Server* holder : keeping) {
    auto op = std::make_unique<Op>();
    op->statements.push_back(RecordStatement(missed, targets));
    op->done = [state](Op& op) {
      state->stored = state->stored || !op.error;
      if (--state->remaining == 0) state->then(state->stored);
    };
    Submit(holder, std::move(op));
  }
}

std::vector<Server*> Handler::Holders(const Server* except) const {
  std::vector<Server*> out;
  for (const auto& server : servers_) {
    if (server.get() != except && server->state() == Server::State::kUp &&
        server->keeps_records()) {
      out.push_back(server.get());
    }
  }
  return out;
}

int Handler::ServerOfIdentity(const std::string& identity) const {
  for (const auto& server : servers_) {
    if (server->spec().identity == identity) return server->index();
  }
  return -1;
}

namespace {

// Deletes `records` (all kept by one server) from that server: exactly those,
// so that one recorded since they were read stays.
Statement DropStatement(const Sql& sql, const std::string& table,
                        const std::vector<const Held*>& records) {
  std::vector<std::string> targets, kinds, subjects, versions, spared;
  for (const Held* h : records) {
    targets.push_back(h->identity);
    kinds.push_back(h->missed.logout ? kRecordLogout : kRecordRevoke);
    subjects.push_back(h->missed.subject);
    versions.push_back(std::to_string(h->missed.version));
    spared.push_back(h->missed.spared);
  }
  return std::move(Statement::Text(sql.drop_records)
                       .Bind(table)
                       .Bind(TextArray(targets))
                       .Bind(TextArray(kinds))
                       .Bind(TextArray(subjects))
                       .Bind(TextArray(versions))
                       .Bind(TextArray(spared)));
}

}  // namespace

// One server's way up (Handler::BeforeUp): what it missed is gathered (this
// process's memory, and the records kept by the servers up here or connecting
// with it) and replayed on it; what it keeps for servers up here is replayed
// on them. Reads are awaited until the server's deadline at most; then it goes
// up with what came.
struct Handler::Catchup : BeforeUpWork, std::enable_shared_from_this<Catchup> {
  Handler* handler = nullptr;
  int server = -1;
  BeforeUpCalls calls;
  size_t reading = 0;     // reads not answered yet
  size_t reading_early = 0;  // of them, those of servers still connecting
  bool grace_over = false;   // servers still connecting are awaited no longer
  bool late = false;      // the deadline passed: nothing more is awaited
  bool replaying = false;  // the reads are over (answered, or given up on)
  bool replayed = false;   // the replay on `server` has answered
  ErrorInfo error;         // its failure
  size_t applying = 0;     // replays on other servers not answered yet
  bool finished = false;
  size_t remembered = 0;       // of missed_[server], the first ones replayed
  std::vector<Held> inbound;   // kept by servers up here, for `server`
  std::vector<Held> outbound;  // kept by `server`, for servers up here

  void GraceOver() override {
    grace_over = true;
    handler->CatchupStep(shared_from_this());
  }
  void Deadline() override {
    late = true;
    handler->CatchupStep(shared_from_this());
  }
};

std::shared_ptr<BeforeUpWork> Handler::BeforeUp(int server, BeforeUpCalls calls) {
  auto c = std::make_shared<Catchup>();
  c->handler = this;
  c->server = server;
  c->calls = std::move(calls);
  Server* self = servers_[server].get();
  auto it = missed_.find(server);
  c->remembered = it == missed_.end() ? 0 : it->second.size();
  const std::string identity = self->spec().identity;
  // Asked: the servers up in this process, and those making their first
  // connection with this one (open(), reset()), whose setup runs side by side
  // with this one: asked on their connection as soon as it is open, ahead of
  // their own setup, since waiting for them to be up could wait on this one.
  // Answers are awaited until the deadline (the connect timeout) at most, and
  // those of servers still connecting only during the grace (Server::BeforeUp);
  // a server down, or retried after a failure, is not asked (see the outbound
  // half below for what it keeps). An answer that comes once the replay has
  // been sent is left where it is: the records stay with their holder, which
  // replays them here when it is up (and they are dropped only once replayed).
  std::vector<Server*> up;
  for (auto& other : servers_) {
    if (other.get() != self && other->state() == Server::State::kUp) up.push_back(other.get());
  }
  std::vector<Server*> asked = Holders(self);
  for (auto& other : servers_) {
    if (other.get() != self && other->routable() && other->state() != Server::State::kUp) {
      asked.push_back(other.get());
    }
  }
  for (Server* holder : asked) {
    ++c->reading;
    auto op = std::make_unique<Op>();
    op->statements.push_back(
        Statement::Text(sql_->records_for).Bind(table_).Bind(TextArray({identity})));
    op->read_only = true;
    const bool early = holder->state() != Server::State::kUp;
    c->reading_early += early;
    op->done = [this, c, holder, server, early](Op& op) {
      c->reading_early -= early;
      if (!op.error && !c->replaying) {
        for (Held& h : ReadHeld(op.results[0].get(), holder, [server](const std::string&) {
               return server;
             })) {
          c->inbound.push_back(std::move(h));
        }
      }
      --c->reading;
      CatchupStep(c);
    };
    if (!early) {
      Submit(holder, std::move(op));
      continue;
    }
    // Not counted among the operations close() waits for: a connection still
    // in setup may drop it unanswered (reset()), and the deadline covers that.
    // (A server without the records table answers with an error: none.)
    op->setup = true;
    holder->Submit(std::move(op));
  }
  if (self->keeps_records() && !up.empty()) {
    std::vector<std::string> identities;
    for (Server* other : up) identities.push_back(other->spec().identity);
    auto op = std::make_unique<Op>();
    op->statements.push_back(
        Statement::Text(sql_->records_for).Bind(table_).Bind(TextArray(identities)));
    op->done = [this, c, self](Op& op) {
      if (!op.error && !c->replaying) {
        c->outbound = ReadHeld(op.results[0].get(), self, [this](const std::string& identity) {
          return ServerOfIdentity(identity);
        });
      }
      --c->reading;
      CatchupStep(c);
    };
    ++c->reading;
    if (!c->calls.send(std::move(op))) return nullptr;  // its setup is over
  }
  CatchupStep(c);
  return c;
}

void Handler::CatchupStep(const std::shared_ptr<Catchup>& c) {
  if (c->finished) return;
  if (!c->replaying) {
    const size_t awaited = c->grace_over ? c->reading - c->reading_early : c->reading;
    if (awaited > 0 && !c->late) return;
    c->replaying = true;
    // On the server itself: what this process remembers, then the records
    // (the same revocation may be both, or recorded on several servers:
    // running it twice finds tombstones, so once is enough).
    std::vector<Statement> statements;
    std::set<std::tuple<bool, std::string, long long, std::string>> seen;
    auto it = missed_.find(c->server);
    for (size_t i = 0; i < c->remembered; ++i) {
      if (seen.insert(KeyOf(it->second[i])).second) statements.push_back(Replay(it->second[i]));
    }
    for (const Held& h : c->inbound) {
      if (seen.insert(KeyOf(h.missed)).second) statements.push_back(Replay(h.missed));
    }
    if (statements.empty()) {
      c->replayed = true;
    } else {
      auto op = std::make_unique<Op>();
      op->statements = std::move(statements);
      op->done = [this, c](Op& op) {
        c->replayed = true;
        c->error = op.error;
        if (!op.error) {
          auto it = missed_.find(c->server);
          if (it != missed_.end()) {
            std::vector<Missed>& list = it->second;
            list.erase(list.begin(), list.begin() + std::min(c->remembered, list.size()));
            if (list.empty()) missed_.erase(it);
          }
          // Applied: the servers that kept them may forget them (best effort;
          // one left behind is replayed again, harmlessly, and GC ends it).
          std::unordered_map<Server*, std::vector<const Held*>> by_holder;
          for (const Held& h : c->inbound) by_holder[h.holder].push_back(&h);
          for (auto& [holder, records] : by_holder) {
            auto drop = std::make_unique<Op>();
            drop->statements.push_back(DropStatement(*sql_, table_, records));
            drop->done = [](Op&) {};
            Submit(holder, std::move(drop));
          }
        }
        CatchupStep(c);
      };
      if (!c->calls.send(std::move(op))) {
        c->finished = true;  // its setup is over; the next one starts again
        return;
      }
    }
    // What this server keeps for the others: replayed on each that is still
    // up, then dropped here (sent now, it goes out once the server is up, so
    // it is not awaited).
    for (auto& [target, records] : ByTarget(c->outbound, c->server)) {
      ++c->applying;
      auto replayed = [this, c] {
        --c->applying;
        CatchupStep(c);
      };
      HandOver(servers_[c->server].get(), target, records, replayed, [] {});
    }
  }
  if (!c->replayed) return;
  if (!c->error && c->applying > 0 && !c->late) return;
  c->finished = true;
  c->calls.done(c->error);
}

std::unordered_map<int, std::vector<const Held*>> Handler::ByTarget(
    const std::vector<Held>& held, int except) const {
  std::unordered_map<int, std::vector<const Held*>> out;
  for (const Held& h : held) {
    if (h.target >= 0 && h.target != except &&
        servers_[h.target]->state() == Server::State::kUp) {
      out[h.target].push_back(&h);
    }
  }
  return out;
}

void Handler::HandOver(Server* holder, int target, const std::vector<const Held*>& records,
                       std::function<void()> replayed, std::function<void()> dropped) {
  auto run = std::make_unique<Op>();
  for (const Held* h : records) run->statements.push_back(Replay(h->missed));
  // Both built now: the records read back need not outlive this call.
  auto drop = std::make_shared<Statement>(DropStatement(*sql_, table_, records));
  run->done = [this, holder, drop, replayed, dropped](Op& op) {
    if (op.error || holder->state() == Server::State::kDown) {
      replayed();
      dropped();
      return;
    }
    auto del = std::make_unique<Op>();
    del->statements.push_back(std::move(*drop));
    del->done = [dropped](Op&) { dropped(); };
    Submit(holder, std::move(del));
    replayed();
  };
  Submit(servers_[target].get(), std::move(run));
}

void Handler::SweepRecords(int server) {
  if (closing()) return;
  Sweep(servers_[server].get(), [] {});
}

void Handler::Sweep(Server* holder, std::function<void()> then) {
  std::vector<std::string> identities;
  for (auto& other : servers_) {
    if (other.get() != holder && other->state() == Server::State::kUp) {
      identities.push_back(other->spec().identity);
    }
  }
  if (closing() || holder->state() != Server::State::kUp || !holder->keeps_records() ||
      identities.empty()) {
    then();
    return;
  }
  auto op = std::make_unique<Op>();
  op->statements.push_back(
      Statement::Text(sql_->records_for).Bind(table_).Bind(TextArray(identities)));
  op->read_only = true;
  op->done = [this, holder, then](Op& op) {
    if (op.error || PQntuples(op.results[0].get()) == 0) {
      then();
      return;
    }
    struct State {
      std::vector<Held> held;
      size_t remaining = 1;
      std::function<void()> then;
    };
    auto state = std::make_shared<State>();
    state->then = then;
    state->held = ReadHeld(op.results[0].get(), holder, [this](const std::string& identity) {
      return ServerOfIdentity(identity);
    });
    auto step = [state] {
      if (--state->remaining == 0) state->then();
    };
    for (auto& [target, records] : ByTarget(state->held, holder->index())) {
      ++state->remaining;
      HandOver(holder, target, records, [] {}, step);
    }
    step();
  };
  Submit(holder, std::move(op));
}

}  // namespace spg
