#include "server.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "results.h"

namespace spg {

namespace {

// Every session-pgsql DDL in a database runs under this one advisory lock: the
// housekeeping record table is shared by all the session tables of a schema.
constexpr const char* kDdlLock = "session-pgsql ddl";

// What housekeeping is told: the handler's settings, and where VACUUM connects.
HousekeepingConfig HousekeepingConfigOf(const ServerConfig& server) {
  HousekeepingConfig config;
  config.sql = server.sql;
  config.table = server.table;
  config.housekeeping_table = server.housekeeping;
  config.gc_grace = server.gc_grace;
  config.gc_interval = server.gc_interval;
  config.vacuum_interval = server.vacuum_interval;
  config.own_connection.server = server.index;
  config.own_connection.conninfo = server.spec.conninfo;
  config.own_connection.secrets = server.spec.secrets;
  config.own_connection.connect_timeout_ms = server.timings.connect_timeout_ms;
  config.own_connection.statement_timeout_ms = server.timings.statement_timeout_ms;
  return config;
}

}  // namespace

Server::Server(Loop* loop, ServerOwner* owner, ServerConfig config)
    : loop_(loop),
      owner_(owner),
      index_(config.index),
      spec_(config.spec),
      timings_(config.timings),
      sql_(config.sql),
      unversioned_sql_(config.unversioned_sql),
      table_(config.table),
      housekeeping_table_(config.housekeeping),
      create_table_(config.create_table),
      state_since_(NowSeconds()),
      housekeeping_(loop, this, HousekeepingConfigOf(config)) {}

Server::~Server() { Close(); }

void Server::SetState(State state) {
  if (state == state_) return;
  state_ = state;
  state_since_ = NowSeconds();
  if (state != State::kUp) {
    host_in_use_.clear();
    port_in_use_.clear();
  }
  // why: the events tell when the server stops or starts being usable. A
  // reset() of a server that is up makes it reconnect (kConnecting) while it
  // stays usable, so nothing is emitted unless the reconnect fails; 'up' and
  // 'down' then always alternate, and a 'down' listener calling reset() cannot
  // make another 'down' of a server that never came back up.
  if (state == State::kUp && !announced_up_) {
    announced_up_ = true;
    owner_->ServerChanged(index_, true);
  } else if (state == State::kDown && announced_up_) {
    announced_up_ = false;
    owner_->ServerChanged(index_, false);
  }
}

bool Server::Advance(Slot* slot, Setup step) {
  if (slot->took(step)) return false;
  slot->taken |= 1u << static_cast<int>(step);
  slot->setup = step;
  return true;
}

Server::Slot* Server::SlotOf(const Connection* conn) {
  for (Slot& slot : slots_) {
    if (slot.conn == conn) return &slot;
  }
  return nullptr;
}

void Server::Start() {
  if (!slots_.empty() || owner_->closing()) return;
  slots_.resize(std::max<size_t>(1, timings_.connections));
  started_at_ = NowSeconds();
  for (Slot& slot : slots_) {
    ConnectionConfig config;
    config.server = index_;
    config.conninfo = spec_.conninfo;
    config.targets = spec_.targets;
    config.secrets = spec_.secrets;
    config.connect_timeout_ms = timings_.connect_timeout_ms;
    config.statement_timeout_ms = timings_.statement_timeout_ms;
    config.max_batch = timings_.max_batch;
    config.statements = sql_->prepared;
    config.unnamed = timings_.unnamed;
    auto* conn = new Connection(loop_, this, std::move(config));
    ErrorInfo error = conn->Start();  // on failure `conn` is already gone
    if (error) {
      std::deque<OpPtr> ops = DropConnections(error);
      Failed(error);
      for (OpPtr& op : ops) owner_->Resend(std::move(op), error);
      return;
    }
    slot.conn = conn;
  }
  SetState(State::kConnecting);
}

void Server::Submit(OpPtr op) {
  ++operations_;
  op->server = index_;
  if (slots_.empty()) {
    // why: a connection that fails at once (no socket directory, no server on
    // the socket, a host name that does not resolve) leaves the server down
    // before any op reaches it; its own error says why, "is down" would not.
    op->error = last_error_;
    if (!op->error) {
      op->error = MakeError(code::kNoServer, "server " + std::to_string(index_) + " is down",
                            index_, true);
    }
    if (op->done) op->done(*op);
    return;
  }
  // An empty op is a barrier (open, reset): it answers once every connection
  // has, so the server is up when it does.
  if (op->statements.empty() && slots_.size() > 1) {
    SubmitBarrier(std::move(op));
    return;
  }
  // An op on a session with ops still pending follows them on their connection,
  // so ops on one session run in the order they were issued. Anything else
  // takes the connection with the least work queued: writes that wait there
  // share its next batch, and batches on different connections commit side by
  // side on different backends.
  Slot* slot = nullptr;
  if (slots_.size() > 1 && !op->key.empty()) {
    for (Slot& s : slots_) {
      if (s.conn->HasPending(op->key)) {
        slot = &s;
        break;
      }
    }
  }
  if (slot == nullptr) {
    slot = &slots_[0];
    for (size_t i = 1; i < slots_.size(); ++i) {
      if (slots_[i].conn->pending() < slot->conn->pending()) slot = &slots_[i];
    }
  }
  slot->conn->Enqueue(std::move(op));
}

void Server::SubmitBarrier(OpPtr op) {
  struct State {
    OpPtr op;
    size_t remaining;
  };
  auto state = std::make_shared<State>(State{std::move(op), slots_.size()});
  for (Slot& slot : slots_) {
    auto part = std::make_unique<Op>();
    part->server = index_;
    part->done = [state](Op& part) {
      Op& whole = *state->op;
      if (part.error && !whole.error) whole.error = std::move(part.error);
      if (--state->remaining == 0 && whole.done) whole.done(whole);
    };
    slot.conn->Enqueue(std::move(part));
  }
}

void Server::Reconnect() {
  std::deque<OpPtr> unsent;
  for (Slot& slot : slots_) {
    if (slot.conn == nullptr) continue;
    if (!slot.conn->ready()) {
      // why: out of its slot, a connection still in setup would never finish
      // it, and its ops (none sent yet) would wait forever: they move to the
      // fresh connections instead; its setup ops are dropped with it.
      for (OpPtr& op : slot.conn->Withdraw()) {
        if (!op->setup) unsent.push_back(std::move(op));
      }
      continue;
    }
    retired_.insert(slot.conn);
    slot.conn->Retire();  // may close (and forget) it at once when idle
  }
  slots_.clear();
  EndSetup();
  attempts_ = 0;
  if (retry_timer_ != nullptr) uv_timer_stop(retry_timer_);
  Start();
  for (OpPtr& op : unsent) {
    if (slots_.empty()) {  // failed at once: as for the ops of a failed connection
      owner_->Resend(std::move(op), last_error_);
      continue;
    }
    --operations_;  // counted when first submitted
    Submit(std::move(op));
  }
}

// Closes every current connection after a failure of one of them (or of a
// start) and returns their unsettled ops, for the caller to resend once the
// server is marked down.
std::deque<OpPtr> Server::DropConnections(const ErrorInfo& error) {
  EndSetup();
  std::vector<Slot> slots = std::move(slots_);
  slots_.clear();
  std::deque<OpPtr> ops;
  dropped_ = &ops;
  for (Slot& slot : slots) {
    if (slot.conn == nullptr) continue;
    retired_.insert(slot.conn);  // so OnBroken treats it as not current
    slot.conn->Fail(error);      // its ops arrive in OnBroken, which adds them to `ops`
  }
  dropped_ = nullptr;
  return ops;
}

void Server::Close() {
  EndSetup();
  if (before_up_timer_ != nullptr) {
    CloseHandle(loop_, before_up_timer_);
    before_up_timer_ = nullptr;
  }
  for (Slot& slot : slots_) {
    if (slot.conn != nullptr) slot.conn->Close();
  }
  slots_.clear();
  for (Connection* old : retired_) old->Close();
  retired_.clear();
  housekeeping_.Close();
  if (retry_timer_ != nullptr) {
    CloseHandle(loop_, retry_timer_);
    retry_timer_ = nullptr;
  }
  SetState(State::kDown);
}

void Server::OnConnected(Connection* conn) {
  if (Slot* slot = SlotOf(conn)) Advance(slot, Setup::kChecking);
  auto op = std::make_unique<Op>();
  op->setup = true;
  // why: behind a transaction pooler a session setting would stay on the
  // backend for whichever client runs there next, and not follow us to the
  // next backend (docs: what pooler 'transaction' gives up).
  if (!timings_.unnamed) {
    op->statements.push_back(
        Statement::Text("SELECT set_config('statement_timeout', $1, false)")
            .Bind(std::to_string(static_cast<long long>(timings_.statement_timeout_ms))));
  }
  if (!timings_.unnamed && PQserverVersion(conn->pg()) >= 120000) {
    // why: the merged read and write unnest arrays, and PostgreSQL would plan
    // them afresh on every call (a custom plan of a few rows looks cheaper than
    // the generic one), costing more than running them. Every statement here
    // has the same plan for any parameters.
    op->statements.push_back(
        Statement::Text("SELECT set_config('plan_cache_mode', 'force_generic_plan', false)"));
  }
  if (!timings_.unnamed && !timings_.synchronous_commit) {
    // The user accepts losing the last few hundred milliseconds of session
    // writes if the server crashes, for commits that do not wait for the disk.
    op->statements.push_back(
        Statement::Text("SELECT set_config('synchronous_commit', 'off', false)"));
  }
  // why: a standby (or a server with default_transaction_read_only) accepts
  // the connection and every read, then fails every write with 25006; it is
  // not a server sessions can use, so it is found out here, before it is up.
  const size_t role = op->statements.size();
  op->statements.push_back(
      Statement::Text("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')"));
  op->statements.push_back(CheckStatement());
  op->done = [this, conn, role](Op& op) {
    if (!op.error && RejectReadOnly(conn, op.results[role].get())) return;
    SetupChecked(conn, op);
  };
  conn->Enqueue(std::move(op));
}

bool Server::RejectReadOnly(Connection* conn, const PGresult* role) {
  if (SlotOf(conn) == nullptr || role == nullptr || PQntuples(role) != 1) return false;
  const bool recovery = PQgetvalue(role, 0, 0)[0] == 't';
  const bool read_only = std::string(PQgetvalue(role, 0, 1)) == "on";
  if (!recovery && !read_only) return false;
  const char* host = PQhost(conn->pg());
  const char* port = PQport(conn->pg());
  const std::string where =
      std::string(host ? host : "") + (port && *port ? ":" + std::string(port) : "");
  ErrorInfo error = MakeError(
      code::kReadOnly,
      "server " + std::to_string(index_) + " (" + where + ") is read-only" +
          (recovery ? " (a standby in recovery)" : " (default_transaction_read_only is on)") +
          ": sessions cannot be written there. List the primary, or list primary and standby "
          "in one entry with target_session_attrs=read-write so that whichever is writable "
          "is used",
      index_, true);
  error.hint = "add target_session_attrs=read-write to a multi-host entry";
  conn->Fail(std::move(error));
  return true;
}

Statement Server::CheckStatement() const {
  return std::move(Statement::Text(sql_->check)
                       .Bind(table_)
                       .Bind(housekeeping_table_)
                       .Bind(sql_->records_table));
}

void Server::CheckUnderLock(Connection* conn, std::vector<Statement> ddl) {
  auto op = std::make_unique<Op>();
  op->setup = true;
  const bool creates = !ddl.empty();
  op->statements.push_back(Statement::Text(sql_->lock).Bind(kDdlLock));
  if (creates) op->statements.push_back(CheckStatement());
  for (Statement& s : ddl) op->statements.push_back(std::move(s));
  op->statements.push_back(CheckStatement());
  op->done = [this, conn, creates](Op& op) {
    if (creates && !op.error) {
      // Under the lock: what was missing before the DDL and is there after it
      // was created by this handler.
      const PGresult* before = op.results[1].get();
      const PGresult* after = op.results.back().get();
      auto found = [&](int column) {
        if (PQgetvalue(before, 0, column)[0] == 't') return Found::kExisted;
        return PQgetvalue(after, 0, column)[0] == 't' ? Found::kCreated : Found::kMissing;
      };
      Note(&table_found_, found(0));
      Note(&housekeeping_found_, found(3));
      Note(&index_found_, found(4));
      Note(&records_found_, found(5));
    }
    SetupChecked(conn, op);
  };
  conn->Enqueue(std::move(op));
}

void Server::CreateHousekeeping(Connection* conn) {
  // The session table exists (perhaps made by PHP, or by a version before
  // records) but the record of housekeeping runs or the records table does not
  // yet. Failing to create them (no CREATE right) only leaves housekeeping
  // uncoordinated and nothing recorded here; sessions are served regardless.
  auto create = std::make_unique<Op>();
  create->setup = true;
  create->statements.push_back(Statement::Text(sql_->lock).Bind(kDdlLock));
  create->statements.push_back(CheckStatement());
  create->statements.push_back(Statement::Text(sql_->create_housekeeping));
  create->statements.push_back(Statement::Text(sql_->create_records));
  create->statements.push_back(CheckStatement());
  create->done = [this, conn](Op& op) {
    if (op.error) {
      Note(&housekeeping_found_, Found::kMissing);
      Note(&records_found_, Found::kMissing);
    } else {
      const PGresult* before = op.results[1].get();
      const bool existed = PQgetvalue(before, 0, 3)[0] == 't';
      Note(&housekeeping_found_, existed ? Found::kExisted : Found::kCreated);
      // An existing records table the role may not use stays unusable.
      const bool had_records = PQgetvalue(before, 0, 5)[0] == 't';
      const bool has_records = PQgetvalue(op.results.back().get(), 0, 5)[0] == 't';
      Note(&records_found_, had_records   ? Found::kExisted
                            : has_records ? Found::kCreated
                                          : Found::kMissing);
    }
    if (SlotOf(conn) != nullptr) Prepare(conn);
  };
  conn->Enqueue(std::move(create));
}

void Server::AddVersion(Connection* conn) {
  auto add = std::make_unique<Op>();
  add->setup = true;
  add->statements.push_back(Statement::Text(sql_->lock).Bind(kDdlLock));
  // why: ALTER TABLE waits for every transaction using the table, and every
  // session statement queues behind it meanwhile: give up soon instead, and
  // serve this connection unversioned (the next connection tries again).
  add->statements.push_back(Statement::Text("SELECT set_config('lock_timeout', '1000', true)"));
  add->statements.push_back(Statement::Text(sql_->add_version));
  add->statements.push_back(CheckStatement());
  add->done = [this, conn](Op& op) {
    Slot* slot = SlotOf(conn);
    if (slot == nullptr) return;
    if (op.error) {
      Unversioned(slot, "adding it failed: " + op.error.message);
      Prepare(conn);
      return;
    }
    Note(&version_found_, Found::kCreated);
    SetupChecked(conn, op);  // the check again, now with the column
  };
  conn->Enqueue(std::move(add));
}

void Server::Unversioned(Slot* slot, const std::string& why) {
  slot->versioned = false;
  Note(&version_found_, Found::kMissing);
  if (warned_unversioned_) return;
  warned_unversioned_ = true;
  const std::string& table = table_;
  owner_->Warn(MakeError(
      code::kTableInvalid,
      "server " + std::to_string(index_) + ": table " + table + " has no " + kVersionColumn +
          " column (" + why + "), so a write that a hung server runs late can replace a newer "
          "one there; add it with `npx session-pgsql init --table " + table +
          "` or ALTER TABLE " + table + " ADD COLUMN IF NOT EXISTS " + kVersionColumn + " bigint",
      index_, false));
}

void Server::Note(Found* field, Found value) {
  if (*field == Found::kUnknown || *field == Found::kMissing) *field = value;
}

void Server::SetupChecked(Connection* conn, Op& op) {
  Slot* slot = SlotOf(conn);
  if (slot == nullptr) return;
  if (op.error) {
    conn->Fail(std::move(op.error));
    return;
  }
  const PGresult* r = op.results.back().get();
  const bool exists = PQgetvalue(r, 0, 0)[0] == 't';
  const std::string& table = table_;
  const Sql& sql = *sql_;
  if (!exists) {
    if (!create_table_ || !Advance(slot, Setup::kCreatingTable)) {
      Note(&table_found_, Found::kMissing);
      conn->Fail(MakeError(code::kTableMissing,
                           "server " + std::to_string(index_) + ": table " + table +
                               " does not exist and createTable is off",
                           index_, false));
      return;
    }
    // Creation runs in one implicit transaction under an advisory lock, so
    // processes starting together neither race nor fail.
    // why: where GC can walk the heap by ranges (PostgreSQL 14+), the table
    // gets no expiry index and room on its pages, so session writes are HOT
    // updates; elsewhere GC needs the index (docs/operations.md, The table).
    std::vector<Statement> ddl;
    if (CreatesWithoutExpiryIndex(PQserverVersion(conn->pg()))) {
      ddl.push_back(Statement::Text(sql.create_table_hot));
    } else {
      ddl.push_back(Statement::Text(sql.create_table));
      ddl.push_back(Statement::Text(sql.create_index));
    }
    ddl.push_back(Statement::Text(sql.create_user_index));
    ddl.push_back(Statement::Text(sql.create_housekeeping));
    ddl.push_back(Statement::Text(sql.create_records));
    CheckUnderLock(conn, std::move(ddl));
    return;
  }
  std::set<std::string> present;
  std::istringstream columns(PQgetvalue(r, 0, 1));
  for (std::string column; std::getline(columns, column, ',');) present.insert(column);
  std::string missing;
  for (const std::string& column : kRequiredColumns) {
    if (present.count(column) == 0) missing += (missing.empty() ? "" : ", ") + column;
  }
  if (!missing.empty() && Advance(slot, Setup::kRechecking)) {
    // why: a table another process is creating right now can be visible to
    // to_regclass (catalog cache) before its columns are (statement snapshot).
    // Under the DDL lock that process has committed, so look once more.
    CheckUnderLock(conn, {});
    return;
  }
  if (!missing.empty()) {
    conn->Fail(MakeError(code::kTableInvalid,
                         "server " + std::to_string(index_) + ": table " + table +
                             " lacks required column(s): " + missing,
                         index_, false));
    return;
  }
  if (PQgetvalue(r, 0, 2)[0] != 't') {
    conn->Fail(MakeError(code::kTableInvalid,
                         "server " + std::to_string(index_) + ": table " + table +
                             " needs a primary key or unique index on sess_id",
                         index_, false));
    return;
  }
  slot->versioned = present.count(kVersionColumn) != 0;
  if (slot->versioned) {
    Note(&version_found_, table_found_ == Found::kCreated ? Found::kCreated : Found::kExisted);
  }
  if (!slot->versioned) {
    if (create_table_ && Advance(slot, Setup::kAddingVersion)) {
      AddVersion(conn);
      return;
    }
    Unversioned(slot, "createTable is off");
  }
  Note(&table_found_, Found::kExisted);
  Note(&index_found_, PQgetvalue(r, 0, 4)[0] == 't' ? Found::kExisted : Found::kMissing);
  const bool has_housekeeping = PQgetvalue(r, 0, 3)[0] == 't';
  const bool has_records = PQgetvalue(r, 0, 5)[0] == 't';
  if (has_housekeeping) Note(&housekeeping_found_, Found::kExisted);
  if (has_records) Note(&records_found_, Found::kExisted);
  // why: a connection that created the table created these with it.
  if ((!has_housekeeping || !has_records) && create_table_ &&
      !slot->took(Setup::kCreatingTable) && Advance(slot, Setup::kCreatingHousekeeping)) {
    CreateHousekeeping(conn);
    return;
  }
  if (!has_housekeeping) Note(&housekeeping_found_, Found::kMissing);
  if (!has_records) Note(&records_found_, Found::kMissing);
  Prepare(conn);
}

void Server::Prepare(Connection* conn) {
  // The statements for this connection's table: with the version column or
  // without it (found by the check just before).
  Slot* slot = SlotOf(conn);
  if (slot != nullptr) Advance(slot, Setup::kPreparing);
  const std::vector<Sql::Prepared>& prepared =
      (slot == nullptr || slot->versioned ? sql_ : unversioned_sql_)->prepared;
  conn->UseStatements(prepared);
  if (timings_.unnamed) {
    Op none;
    SetupPrepared(conn, none);
    return;
  }
  // Each statement in a Sync of its own, all pipelined: one that exists
  // already (42P05: a pooler's backend that a previous client of ours used)
  // has the same text, since its name is derived from the text, and is ready.
  struct Pending {
    size_t remaining;
    Op outcome;
  };
  auto pending = std::make_shared<Pending>();
  pending->remaining = prepared.size();
  for (const Sql::Prepared& p : prepared) {
    auto prepare = std::make_unique<Op>();
    prepare->setup = true;
    prepare->statements.push_back(Statement::Prepare(p.name, p.text, p.param_count));
    prepare->done = [this, conn, pending](Op& op) {
      const bool exists = op.error.code == sqlstate::kDuplicatePreparedStatement;
      if (op.error && !exists && !pending->outcome.error) {
        pending->outcome.error = std::move(op.error);
      }
      if (--pending->remaining == 0) SetupPrepared(conn, pending->outcome);
    };
    conn->Enqueue(std::move(prepare));
  }
}

void Server::SetupPrepared(Connection* conn, Op& op) {
  Slot* slot = SlotOf(conn);
  if (slot == nullptr) return;
  if (op.error) {
    conn->Fail(std::move(op.error));
    return;
  }
  // why: marked ready only once BeforeUp has run, so that no session
  // operation queued meanwhile (a fresh process routes to a server during its
  // first connect) goes out before what the server missed is replayed there.
  Advance(slot, Setup::kReady);
  for (const Slot& s : slots_) {
    if (s.setup != Setup::kReady) return;  // up once every connection is
  }
  BeforeUp(conn);
}

void Server::BeforeUp(Connection* conn) {
  // why: a revocation or a logout that could not reach this server must hold
  // before any session is served from it again. Nothing is routed here until
  // it is up (a server retried after a failure is not routable), and what was
  // queued during a first connect waits for the connections to be ready, so
  // running it first on one of its connections is enough.
  const uint64_t epoch = setup_epoch_;
  BeforeUpCalls calls;
  calls.send = [this, conn, epoch](OpPtr op) {
    if (setup_epoch_ != epoch || SlotOf(conn) == nullptr) return false;
    op->setup = true;
    op->server = index_;
    conn->Enqueue(std::move(op));
    return true;
  };
  calls.done = [this, conn, epoch](ErrorInfo error) {
    if (setup_epoch_ != epoch || !waiting_before_up_ || SlotOf(conn) == nullptr) return;
    BeforeUpDone(conn, std::move(error));
  };
  waiting_before_up_ = true;
  std::shared_ptr<BeforeUpWork> work = owner_->BeforeUp(index_, std::move(calls));
  if (!waiting_before_up_ || setup_epoch_ != epoch) return;  // done already
  before_up_ = std::move(work);
  // The owner asks other servers; their answers are awaited as long as a
  // connection of this one may take, no longer (docs/behaviour.md). Those
  // still making their first connection alongside this one are awaited for
  // twice as long as this server took to get here (at least kMinGraceMs):
  // why: one as healthy as this one has answered by then, and one that hangs
  // (frozen, or a dead host's SYN unanswered) must not hold a fresh process's
  // every session for the whole connect timeout. What such a server keeps for
  // this one is replayed here when it comes up (records.cc).
  if (before_up_ == nullptr || timings_.connect_timeout_ms <= 0) return;
  constexpr double kMinGraceMs = 100;
  const double took_ms = (NowSeconds() - started_at_) * 1000;
  const double grace_ms =
      std::min(timings_.connect_timeout_ms, std::max(kMinGraceMs, 2 * took_ms));
  before_up_left_ms_ = timings_.connect_timeout_ms - grace_ms;
  if (before_up_timer_ == nullptr) before_up_timer_ = NewTimer();
  uv_timer_start(before_up_timer_, OnBeforeUpTimer, static_cast<uint64_t>(grace_ms), 0);
}

void Server::OnBeforeUpTimer(uv_timer_t* timer) {
  auto* self = static_cast<Server*>(timer->data);
  Loop::JsScope scope(self->loop_);
  std::shared_ptr<BeforeUpWork> work = self->before_up_;
  if (work == nullptr || !self->waiting_before_up_) return;
  if (self->before_up_left_ms_ < 0) {
    work->Deadline();
    return;
  }
  // The grace is over; the deadline comes after what is left of it.
  const double left_ms = self->before_up_left_ms_;
  self->before_up_left_ms_ = -1;
  uv_timer_start(timer, OnBeforeUpTimer, static_cast<uint64_t>(left_ms), 0);
  work->GraceOver();  // may end the wait (and stop the timer) at once
}

void Server::BeforeUpDone(Connection* conn, ErrorInfo error) {
  waiting_before_up_ = false;
  before_up_.reset();
  if (before_up_timer_ != nullptr) uv_timer_stop(before_up_timer_);
  if (error) {
    conn->Fail(std::move(error));  // still down; tried again on the next connect
    return;
  }
  for (Slot& slot : slots_) slot.conn->MarkReady();
  GoUp();
}

void Server::EndSetup() {
  ++setup_epoch_;
  waiting_before_up_ = false;
  before_up_.reset();
  if (before_up_timer_ != nullptr) uv_timer_stop(before_up_timer_);
}

void Server::GoUp() {
  attempts_ = 0;
  last_error_ = {};
  if (failures_ > 0) recovered_at_ = NowSeconds();
  const char* host = PQhost(slots_.front().conn->pg());
  const char* port = PQport(slots_.front().conn->pg());
  host_in_use_ = host ? host : "";
  port_in_use_ = port ? port : "";
  SetState(State::kUp);
  housekeeping_.ServerUp();
}

void Server::OnBroken(Connection* conn, ErrorInfo error, std::deque<OpPtr> ops) {
  if (dropped_ != nullptr) {
    // A sibling failed by DropConnections: its ops wait with the others.
    retired_.erase(conn);
    for (OpPtr& op : ops) dropped_->push_back(std::move(op));
    return;
  }
  if (SlotOf(conn) != nullptr) {
    // One connection failing means the server failed: the others go too, and
    // the server is retried as a whole.
    // why: the server is marked down before any op of any of its connections is
    // resent; a sibling's op resent while it still looked up would be routed
    // back here and fail although other servers are up.
    SlotOf(conn)->conn = nullptr;
    std::deque<OpPtr> siblings = DropConnections(error);
    Failed(error);
    for (OpPtr& op : siblings) ops.push_back(std::move(op));
  } else {
    retired_.erase(conn);
  }
  for (OpPtr& op : ops) owner_->Resend(std::move(op), error);
}

void Server::OnRetired(Connection* conn) { retired_.erase(conn); }

void Server::Failed(ErrorInfo error) {
  ++failures_;
  last_error_ = std::move(error);
  SetState(State::kDown);
  ScheduleRetry();
}

uv_timer_t* Server::NewTimer() {
  auto* timer = new uv_timer_t;
  uv_timer_init(loop_->loop(), timer);
  timer->data = this;
  loop_->HandleOpened();
  // why: a server's timers never keep the process alive by themselves.
  uv_unref(reinterpret_cast<uv_handle_t*>(timer));
  return timer;
}

void Server::ScheduleRetry() {
  if (owner_->closing()) return;
  if (retry_timer_ == nullptr) retry_timer_ = NewTimer();
  // Exponential backoff with jitter: half the step fixed, half random, so many
  // processes that lost the same server do not reconnect in lockstep.
  const double step = std::min(timings_.retry_max_ms,
                               timings_.retry_min_ms * std::pow(2.0, std::min(attempts_, 30)));
  ++attempts_;
  static thread_local std::minstd_rand random{std::random_device{}()};
  const double delay = step / 2 + std::uniform_real_distribution<double>(0, step / 2)(random);
  uv_timer_start(retry_timer_, OnRetryTimer, static_cast<uint64_t>(delay), 0);
}

void Server::OnRetryTimer(uv_timer_t* timer) {
  auto* self = static_cast<Server*>(timer->data);
  Loop::JsScope scope(self->loop_);
  self->Start();
}

}  // namespace spg
