#include "housekeeping.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <random>

#include "results.h"

namespace spg {

namespace {

double Jitter() {
  static thread_local std::minstd_rand random{std::random_device{}()};
  return std::uniform_real_distribution<double>(0, 1)(random);
}

}  // namespace

struct GcState {
  GcState(Housekeeping::GcDone d, bool f) : done(std::move(d)), forced(f) {}
  Housekeeping::GcDone done;
  bool forced;
  double started = NowSeconds();
  long long removed = 0;
  Connection* conn = nullptr;  // the run's own connection, until GcEnded
  bool claimed = false;        // the run won the claim: it is recorded
  bool ended = false;          // no more batches (GcEnded has run)
  bool recording = false;      // its record is being written on its connection
  ErrorInfo error;             // how it ended
  GcWay way = GcWay::kByIndex;
  long long pages = 0;  // the table's size when the run started (kByRanges)
  long long page = 0;   // the first page of the range being collected
  double batch_started = 0;
  uv_timer_t* pause = nullptr;  // between batches; owned, closed in GcClosed
  Housekeeping* owner = nullptr;
};

namespace {

std::string Tid(long long page) { return "(" + std::to_string(page) + ",0)"; }

}  // namespace

Housekeeping::Housekeeping(Loop* loop, Host* host, HousekeepingConfig config)
    : loop_(loop),
      host_(host),
      config_(std::move(config)),
      gc_job_("gc " + config_.table),
      vacuum_job_("vacuum " + config_.table) {}

Housekeeping::~Housekeeping() { Close(); }

void Housekeeping::ServerUp() {
  if (gc_timer_ == nullptr && config_.gc_interval > 0) gc_timer_ = StartTimer(config_.gc_interval);
  if (vacuum_timer_ == nullptr && config_.vacuum_interval > 0) {
    vacuum_timer_ = StartTimer(config_.vacuum_interval);
  }
}

uv_timer_t* Housekeeping::StartTimer(double interval) {
  auto* timer = new uv_timer_t;
  uv_timer_init(loop_->loop(), timer);
  loop_->HandleOpened();
  timer->data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(timer));
  // Every process ticks once per interval; the first tick comes at a random
  // point of the first 30 s (or interval) so a fleet started together spreads out.
  const double first = Jitter() * std::min(interval, 30.0);
  uv_timer_start(timer, OnTimer, static_cast<uint64_t>(first * 1000),
                 static_cast<uint64_t>(interval * 1000));
  return timer;
}

void Housekeeping::CloseTimer(uv_timer_t** timer) {
  if (*timer == nullptr) return;
  CloseHandle(loop_, *timer);
  *timer = nullptr;
}

void Housekeeping::Close() {
  CloseTimer(&gc_timer_);
  for (auto& run : gc_runs_) {
    if (run->conn != nullptr) run->conn->Close();
    run->conn = nullptr;
    if (run->pause != nullptr) CloseHandle(loop_, run->pause);
    run->pause = nullptr;
    run->ended = true;
  }
  gc_runs_.clear();
  CloseTimer(&vacuum_timer_);
  if (vacuum_conn_ != nullptr) {
    vacuum_conn_->Close();
    vacuum_conn_ = nullptr;
  }
  vacuum_waiters_.clear();
}

void Housekeeping::OnTimer(uv_timer_t* timer) {
  auto* self = static_cast<Housekeeping*>(timer->data);
  Loop::JsScope scope(self->loop_);
  if (self->host_->closing() || !self->host_->server_up()) return;
  if (timer == self->gc_timer_) self->host_->GcTick();
  if (timer == self->gc_timer_ && !self->gc_running_) {
    self->Gc(false, [](const ErrorInfo&, long long) {});
  } else if (timer == self->vacuum_timer_ && !self->vacuum_busy_) {
    self->Vacuum(false, [](const ErrorInfo&, bool) {});
  }
}

void Housekeeping::Gc(bool forced, GcDone done) {
  auto state = std::make_shared<GcState>(std::move(done), forced);
  if (!forced) gc_running_ = true;
  if (forced) {
    StartGc(state);  // claimed on its own connection, like everything else of the run
    return;
  }
  // why: a timer run usually finds that another process has run GC within the
  // interval; asking on the session connection spares every process of a fleet
  // a connection per tick. Only a run that won the claim opens its own.
  auto claim = std::make_unique<Op>();
  claim->statements.push_back(GcClaim(*state));
  claim->done = [this, state](Op& op) {
    if (GcClaimed(state, op)) StartGc(state);
  };
  host_->SubmitTracked(std::move(claim));
}

Statement Housekeeping::GcClaim(const GcState& state) const {
  return std::move(Statement::Text(config_.sql->claim)
                       .Bind(gc_job_)
                       .Bind(std::to_string(state.forced ? 0.0 : config_.gc_interval)));
}

bool Housekeeping::GcClaimed(const std::shared_ptr<GcState>& state, Op& op) {
  if (op.error && !(state->forced && op.error.code == sqlstate::kUndefinedTable)) {
    last_gc_ = {};
    last_gc_.valid = true;
    last_gc_.at = state->started;
    last_gc_.duration = NowSeconds() - state->started;
    last_gc_.error = op.error.message;
    GcEnded(state, op.error);
    return false;
  }
  // A forced run without the record table (never initialised) still runs.
  if (!op.error && PQntuples(op.results[0].get()) == 0) {  // another process has it
    GcEnded(state, {});
    return false;
  }
  state->claimed = true;
  return true;
}

// GC runs on a connection of its own: its statements never sit in the
// sessions' pipeline (where each would hold up every request queued behind it,
// and wait behind any session statement that waits on a lock), and they run
// side by side with session traffic on another backend.
void Housekeeping::StartGc(std::shared_ptr<GcState> state) {
  if (host_->closing()) {
    GcEnded(state, {});
    return;
  }
  // A forced run runs whatever the record says (its claim only notes it), so
  // whatever ends it, a failed connection included, is recorded as its outcome.
  if (state->forced) state->claimed = true;
  auto* conn = new Connection(loop_, this, config_.own_connection);
  ErrorInfo error = conn->Start();  // on failure `conn` is already gone
  if (error) {
    GcEnded(state, error);
    return;
  }
  state->conn = conn;
  gc_runs_.push_back(state);
  // Queued before the connection is up, so the run keeps the process alive
  // like any operation someone waits for. Every op of the run is `setup`: the
  // connection has no setup of its own, so everything may go out.
  if (state->forced) {
    auto claim = std::make_unique<Op>();
    claim->setup = true;
    claim->statements.push_back(GcClaim(*state));
    claim->done = [this, state](Op& op) {
      // Only a failure matters here: the run goes on regardless (see above).
      if (!state->ended && op.error && op.error.code != sqlstate::kUndefinedTable) {
        GcEnded(state, op.error);
      }
    };
    conn->Enqueue(std::move(claim));
  }
  auto plan = std::make_unique<Op>();
  plan->setup = true;
  plan->statements.push_back(Statement::Text(config_.sql->check)
                                 .Bind(config_.table)
                                 .Bind(config_.housekeeping_table)
                                 .Bind(config_.sql->records_table));
  plan->statements.push_back(Statement::Text(config_.sql->gc_pages).Bind(config_.table));
  plan->done = [this, state](Op& op) { GcPlanned(state, op); };
  conn->Enqueue(std::move(plan));
  // Records of what another server missed that can concern no live session
  // any more (Sql::record_revoke): best effort, in a transaction of its own
  // (a server without the records table fails it alone), before the batches.
  auto purge = std::make_unique<Op>();
  purge->setup = true;
  purge->statements.push_back(Statement::Text(config_.sql->purge_records).Bind(config_.table));
  purge->done = [](Op&) {};
  conn->Enqueue(std::move(purge));
}

void Housekeeping::GcPlanned(const std::shared_ptr<GcState>& state, Op& op) {
  if (state->ended) return;
  if (op.error) {
    GcEnded(state, op.error);
    return;
  }
  // Found now, not at setup: an operator who drops the expiry index (the
  // migration in docs/operations.md) gets GC by ranges from the next run on.
  const PGresult* check = op.results[0].get();
  const bool expiry_index = PQntuples(check) == 1 && PQgetvalue(check, 0, 4)[0] == 't';
  state->way = ChooseGcWay(PQserverVersion(state->conn->pg()), expiry_index);
  const PGresult* pages = op.results[1].get();
  if (PQntuples(pages) == 1 && !PQgetisnull(pages, 0, 0)) {
    state->pages = std::atoll(PQgetvalue(pages, 0, 0));
  }
  GcBatch(state);
}

void Housekeeping::GcBatch(std::shared_ptr<GcState> state) {
  // keepExpired keeps expired rows (and so their metadata) for one more
  // lifetime; without it a row goes as soon as it has expired.
  const std::string grace = std::to_string(config_.gc_grace);
  auto batch = std::make_unique<Op>();
  batch->setup = true;
  // By ranges, the last range is open-ended: it takes in pages the table grew
  // by during the run too.
  const bool last = state->page + kGcRangePages >= state->pages;
  if (state->way == GcWay::kByRanges) {
    batch->statements.push_back(
        Statement::Text(config_.sql->gc_range)
            .Bind(grace)
            .Bind(Tid(state->page))
            .Bind(last ? "(4294967295,0)" : Tid(state->page + kGcRangePages)));
  } else {
    batch->statements.push_back(Statement::Text(config_.sql->gc).Bind(grace));
  }
  state->batch_started = NowSeconds();
  batch->done = [this, state, last](Op& op) {
    if (state->ended) return;
    long long n = op.error ? 0 : AffectedRows(op.results[0].get());
    state->removed += n;
    if (op.error || host_->closing() || !host_->server_up()) {
      GcEnded(state, op.error);
      return;
    }
    // A full batch may have left more behind (in its range, by ranges);
    // otherwise the range is done (SKIP LOCKED rows wait for the next run).
    if (n >= config_.sql->gc_batch) {
      GcPause(state);
      return;
    }
    if (state->way == GcWay::kByRanges && !last) {
      state->page += kGcRangePages;
      GcPause(state);
      return;
    }
    GcEnded(state, {});
  };
  state->conn->Enqueue(std::move(batch));
}

// why: each batch's deletes write WAL and dirty pages that the sessions'
// commits then wait behind (one disk, one WAL); GC that never paused took most
// of the I/O while it ran, and the users' p99 with it. Resting as long as the
// last batch took keeps GC to at most half of the time, whatever the disk.
void Housekeeping::GcPause(const std::shared_ptr<GcState>& state) {
  const double rest = std::min(kGcMaxPauseSeconds, NowSeconds() - state->batch_started);
  if (rest < 0.001) {
    GcBatch(state);
    return;
  }
  if (state->pause == nullptr) {
    state->pause = new uv_timer_t;
    uv_timer_init(loop_->loop(), state->pause);
    loop_->HandleOpened();
    state->owner = this;
    state->pause->data = state.get();
    // A timer run must not keep the process alive; gc()'s caller waits for it.
    if (!state->forced) uv_unref(reinterpret_cast<uv_handle_t*>(state->pause));
  }
  uv_timer_start(
      state->pause,
      [](uv_timer_t* timer) {
        auto* raw = static_cast<GcState*>(timer->data);
        Housekeeping* self = raw->owner;
        Loop::JsScope scope(self->loop_);
        for (auto& run : self->gc_runs_) {
          if (run.get() != raw) continue;
          auto state = run;
          if (!state->ended) self->GcBatch(state);
          return;
        }
      },
      static_cast<uint64_t>(rest * 1000), 0);
}

void Housekeeping::GcEnded(const std::shared_ptr<GcState>& state, const ErrorInfo& error) {
  if (state->ended) return;
  state->ended = true;
  state->error = error;
  if (state->claimed) {
    last_gc_.valid = true;
    last_gc_.at = state->started;
    last_gc_.duration = NowSeconds() - state->started;
    last_gc_.removed = state->removed;
    last_gc_.error = error ? error.message : "";
  }
  if (state->claimed && state->conn != nullptr && !host_->closing()) {
    // Recorded on the run's own connection before gc() resolves, so whoever
    // reads the record table after it sees this run.
    state->recording = true;
    auto record = std::make_unique<Op>();
    record->setup = true;
    record->statements.push_back(RecordStatement(gc_job_, last_gc_, error));
    record->done = [this, state](Op&) {
      GcClosed(state);  // best effort: a missing record table was reported by the claim
    };
    state->conn->Enqueue(std::move(record));
    return;
  }
  // Lost or failed claim (last_gc_ says so), or no connection left to record on.
  if (state->claimed) Record(gc_job_, &last_gc_, error);  // on the session connection
  GcClosed(state);
}

void Housekeeping::GcClosed(const std::shared_ptr<GcState>& state) {
  gc_runs_.erase(std::remove(gc_runs_.begin(), gc_runs_.end(), state), gc_runs_.end());
  if (state->pause != nullptr) {
    CloseHandle(loop_, state->pause);
    state->pause = nullptr;
  }
  if (state->conn != nullptr) {
    state->conn->Close();
    state->conn = nullptr;
  }
  GcFinished(*state, state->error);
}

void Housekeeping::GcFinished(GcState& state, const ErrorInfo& error) {
  // why: only the timer's own run marks GC running; a forced gc() that ends
  // (or loses the claim) meanwhile must not let the timer start a second one.
  if (!state.forced) gc_running_ = false;
  state.done(error, state.removed);
}

Statement Housekeeping::RecordStatement(const std::string& job, const Run& run,
                                        const ErrorInfo& error) const {
  Statement s = Statement::Text(config_.sql->record);
  s.Bind(job).Bind(std::to_string(run.removed)).Bind(std::to_string(run.duration));
  if (error) {
    s.Bind(error.message);
  } else {
    s.BindNull();
  }
  return s;
}

void Housekeeping::Record(const std::string& job, Run* run, const ErrorInfo& error) {
  if (host_->closing() || !host_->server_up()) return;
  auto record = std::make_unique<Op>();
  record->statements.push_back(RecordStatement(job, *run, error));
  record->done = [](Op&) {};  // best effort: a missing record table was reported by the claim
  host_->SubmitTracked(std::move(record));
}

void Housekeeping::Vacuum(bool forced, VacuumDone done) {
  vacuum_waiters_.push_back(std::move(done));
  if (vacuum_busy_) return;  // one VACUUM at a time; later callers share it
  vacuum_busy_ = true;
  vacuum_run_ = {};
  vacuum_run_.at = NowSeconds();
  // The right to vacuum is checked before the job is claimed, so a role without
  // it never takes the interval from a process that could run it.
  auto check = std::make_unique<Op>();
  check->statements.push_back(
      Statement::Text(config_.sql->may_vacuum).Bind(config_.table));
  check->done = [this, forced](Op& op) {
    if (op.error) {
      VacuumFinished(op.error);
      return;
    }
    const PGresult* may = op.results[0].get();
    if (PQntuples(may) == 0 || PQgetvalue(may, 0, 0)[0] != 't') {
      VacuumFinished(MakeError(sqlstate::kInsufficientPrivilege,
                               "server " + std::to_string(server()) +
                                   ": the role may not VACUUM " + config_.table +
                                   " (only its owner, the database owner or a superuser may); "
                                   "sessions are served as usual",
                               server(), false));
      return;
    }
    auto claim = std::make_unique<Op>();
    claim->statements.push_back(Statement::Text(config_.sql->claim)
                                    .Bind(vacuum_job_)
                                    .Bind(std::to_string(forced ? 0.0 : config_.vacuum_interval)));
    claim->done = [this, forced](Op& op) {
      // A forced run without the record table (never initialised) still runs.
      if (op.error && !(forced && op.error.code == sqlstate::kUndefinedTable)) {
        VacuumFinished(op.error);
        return;
      }
      if (!op.error && PQntuples(op.results[0].get()) == 0) {  // another process has it
        vacuum_busy_ = false;
        auto waiters = std::move(vacuum_waiters_);
        for (auto& w : waiters) w({}, false);
        return;
      }
      StartVacuum();
    };
    host_->SubmitTracked(std::move(claim));
  };
  host_->SubmitTracked(std::move(check));
}

// VACUUM runs on a connection of its own so session traffic never waits on it.
void Housekeeping::StartVacuum() {
  if (host_->closing()) {
    VacuumFinished(MakeError(code::kClosed, "the handler is closing"));
    return;
  }
  auto* conn = new Connection(loop_, this, config_.own_connection);
  ErrorInfo error = conn->Start();
  if (error) {
    VacuumFinished(std::move(error));
    return;
  }
  vacuum_conn_ = conn;
  // Queued before the connection is up, so the pending VACUUM keeps the
  // process alive like any operation someone waits for.
  auto vacuum = std::make_unique<Op>();
  vacuum->setup = true;
  vacuum->no_deadline = true;  // VACUUM takes as long as it takes, off the session path
  vacuum->statements.push_back(Statement::Text(config_.sql->vacuum));
  vacuum->done = [this, conn](Op& op) {
    ErrorInfo error = op.error;
    vacuum_conn_ = nullptr;
    conn->Close();
    VacuumFinished(std::move(error));
  };
  conn->Enqueue(std::move(vacuum));
}

void Housekeeping::Cancel() {
  // The batches that committed stay done; gc() resolves with them.
  auto runs = gc_runs_;
  for (auto& run : runs) {
    if (run->recording) {
      GcClosed(run);
    } else {
      GcEnded(run, {});
    }
  }
  if (!vacuum_busy_) return;
  if (vacuum_conn_ != nullptr) {
    vacuum_conn_->Close();  // the server ends the VACUUM with the connection
    vacuum_conn_ = nullptr;
  }
  VacuumFinished(MakeError(code::kClosed, "the handler was closed during VACUUM"));
}

void Housekeeping::OnConnected(Connection*) {}

void Housekeeping::OnBroken(Connection* conn, ErrorInfo error, std::deque<OpPtr>) {
  for (auto& run : gc_runs_) {
    if (run->conn != conn) continue;
    auto state = run;
    state->conn = nullptr;  // closed already
    if (state->recording) {
      GcClosed(state);
    } else {
      GcEnded(state, error);
    }
    return;
  }
  if (conn == vacuum_conn_) vacuum_conn_ = nullptr;
  VacuumFinished(std::move(error));
}

void Housekeeping::VacuumFinished(ErrorInfo error) {
  vacuum_busy_ = false;
  vacuum_run_.valid = true;
  vacuum_run_.duration = NowSeconds() - vacuum_run_.at;
  vacuum_run_.error = error ? error.message : "";
  last_vacuum_ = vacuum_run_;
  Record(vacuum_job_, &last_vacuum_, error);
  if (error.code == sqlstate::kInsufficientPrivilege && !denied_reported_) {
    denied_reported_ = true;  // said once, clearly; sessions go on
    host_->Warn(error);
  }
  auto waiters = std::move(vacuum_waiters_);
  for (auto& w : waiters) w(error, !error);
}

}  // namespace spg
