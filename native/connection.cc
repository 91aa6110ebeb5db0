#include "connection.h"

#include <utility>

#include "loop.h"

namespace spg {

namespace {

// A prepared statement that exists already (42P05) or not at all (26000) on a
// connection that prepared it: a pooler shares backends between clients.
void HintPooler(ErrorInfo* error) {
  if (error->code != sqlstate::kDuplicatePreparedStatement &&
      error->code != sqlstate::kInvalidSqlStatementName) {
    return;
  }
  const char* hint =
      "a connection pooler in transaction mode (PgBouncer before 1.21 or without "
      "max_prepared_statements, RDS Proxy, Supavisor) runs each transaction on any backend: "
      "set the option pooler: 'transaction'";
  error->hint = error->hint.empty() ? hint : error->hint + "; " + hint;
}

}  // namespace

Connection::Connection(Loop* loop, ConnectionDelegate* delegate, ConnectionConfig config)
    : loop_(loop),
      delegate_(delegate),
      config_(std::move(config)),
      pipeline_(config_.max_in_flight, config_.max_batch) {
  loop_->Register(this);
}

Connection::~Connection() { loop_->Unregister(this); }

// The one place the state changes: forward only, and once closed it stays so.
void Connection::To(State next) {
  if (state_ == State::kClosed || next <= state_) return;
  state_ = next;
}

ErrorInfo Connection::Start() {
  To(State::kConnecting);
  timer_ = new uv_timer_t;
  uv_timer_init(loop_->loop(), timer_);
  loop_->HandleOpened();
  timer_->data = this;
  ErrorInfo error = StartAttempt();
  while (error && target_ + 1 < config_.targets.size()) {
    NoteTargetFailed(error);
    ++target_;
    error = StartAttempt();
  }
  if (error) {
    Close();
    return error;
  }
  UpdateRef();
  return {};
}

// Starts connecting to the entry (or to its current host) under a fresh
// connect timeout; on failure nothing of the attempt is left open.
ErrorInfo Connection::StartAttempt() {
  std::vector<const char*> keys, values;
  if (config_.targets.empty()) {
    // why: expand_dbname lets the whole entry (key=value or URI) ride in "dbname".
    keys.push_back("dbname");
    values.push_back(config_.conninfo.c_str());
  } else {
    const ConnectTarget& target = config_.targets[target_];
    for (size_t i = 0; i < target.keywords.size(); ++i) {
      keys.push_back(target.keywords[i].c_str());
      values.push_back(target.values[i].c_str());
    }
  }
  // Later keywords override earlier ones: client_encoding comes last so it
  // wins, since JS strings always arrive as UTF-8.
  keys.insert(keys.end(), {"fallback_application_name", "client_encoding", nullptr});
  values.insert(values.end(), {"session-pgsql", "UTF8", nullptr});
  conn_ = PQconnectStartParams(keys.data(), values.data(), config_.targets.empty() ? 1 : 0);
  if (conn_ == nullptr || PQstatus(conn_) == CONNECTION_BAD) {
    ErrorInfo error = ConnectionError(code::kConnectFailed, conn_, config_.server, config_.secrets);
    DropAttempt();
    return error;
  }
  // Server notices (e.g. "relation already exists, skipping") are not the
  // application's business; libpq would print them on stderr.
  PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
  uv_timer_start(timer_, OnTimer, static_cast<uint64_t>(config_.connect_timeout_ms), 0);
  // The first PQconnectPoll step waits for the socket to become writable.
  if (!WatchSocket(UV_WRITABLE)) {
    ErrorInfo error = LostError(code::kConnectFailed);
    DropAttempt();
    return error;
  }
  return {};
}

// Forgets the current attempt: stops watching its socket, then closes it.
void Connection::DropAttempt() {
  if (poll_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), OnHandleClosed);
    ++pending_closes_;
    poll_ = nullptr;
    watched_events_ = 0;
  }
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
}

// Adds why the current host failed to the message of a failure of them all.
void Connection::NoteTargetFailed(const ErrorInfo& error) {
  const std::string prefix = "server " + std::to_string(config_.server) + ": ";
  const bool prefixed = error.message.compare(0, prefix.size(), prefix) == 0;
  target_errors_ += (target_errors_.empty() ? "" : "; ") + config_.targets[target_].label + ": " +
                    (prefixed ? error.message.substr(prefix.size()) : error.message);
}

// The attempt on the current host failed: the next host of the entry gets
// its turn (and its own connect timeout); after the last, the connection fails
// with what happened on each.
void Connection::ConnectFailed(ErrorInfo error) {
  while (!config_.targets.empty()) {
    NoteTargetFailed(error);
    if (target_ + 1 >= config_.targets.size()) {
      error = MakeError(error.code.c_str(),
                        "server " + std::to_string(config_.server) +
                            ": no host of the entry could be used: " + target_errors_,
                        config_.server, true);
      break;
    }
    DropAttempt();
    ++target_;
    error = StartAttempt();
    if (!error) {
      UpdateRef();
      return;
    }
  }
  Fail(std::move(error));
}

void Connection::Enqueue(OpPtr op) {
  pipeline_.Enqueue(std::move(op));
  UpdateRef();
  MarkDirty();
}

void Connection::MarkReady() {
  To(State::kReady);
  MarkDirty();
}

void Connection::Retire() {
  retiring_ = true;
  if (pending() == 0) {
    delegate_->OnRetired(this);
    Close();
  }
}

void Connection::MarkDirty() {
  if (dirty_ || closed()) return;
  dirty_ = true;
  loop_->ScheduleFlush(this);
}

ErrorInfo Connection::LostError(const char* code) {
  return ConnectionError(code, conn_, config_.server, config_.secrets);
}

bool Connection::WatchSocket(int events) {
  int fd = PQsocket(conn_);
  if (fd < 0) return false;
  // why: during connect libpq may close the socket and open another that reuses
  // the same descriptor number (next host or address), so a fresh handle is made
  // for every connect step; a stale epoll registration would never fire.
  if (poll_ != nullptr && state_ == State::kConnecting) {
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), OnHandleClosed);
    ++pending_closes_;
    poll_ = nullptr;
  }
  if (poll_ == nullptr) {
    poll_ = new uv_poll_t;
    if (uv_poll_init_socket(loop_->loop(), poll_, fd) != 0) {
      delete poll_;
      poll_ = nullptr;
      return false;
    }
    loop_->HandleOpened();
    poll_->data = this;
    watched_events_ = 0;
  }
  if (events != watched_events_) {
    if (uv_poll_start(poll_, events, OnPoll) != 0) return false;
    watched_events_ = events;
  }
  return true;
}

void Connection::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<Connection*>(handle->data);
  Loop* loop = self->loop_;
  {
    Loop::JsScope scope(loop);
    self->Poll(status, events);
  }
  loop->RunDeliveries();
}

void Connection::Poll(int status, int events) {
  if (closed()) return;
  if (state_ == State::kConnecting) {
    // A socket error while connecting (status < 0) is for PQconnectPoll to
    // read: it records the reason and, for a multi-host entry, tries the next host.
    ContinueConnect();
    return;
  }
  if (status < 0) {
    // why: libuv reports socket errors as status < 0 with no events and has
    // already stopped the handle; ignoring it would leave ops waiting forever.
    ErrorInfo error = LostError(code::kConnectionLost);
    error.message += std::string(" (") + uv_strerror(status) + ")";
    Fail(std::move(error));
    return;
  }
  if (events & UV_READABLE) {
    HandleReadable();
    if (closed()) return;
  }
  if ((events & UV_WRITABLE) && want_write_) FlushOutput();
}

void Connection::OnTimer(uv_timer_t* handle) {
  auto* self = static_cast<Connection*>(handle->data);
  Loop::JsScope scope(self->loop_);
  if (self->closed()) return;
  if (self->state_ == State::kConnecting) {
    self->ConnectFailed(MakeError(code::kConnectTimeout,
                                  "server " + std::to_string(self->config_.server) +
                                      ": no connection within the connect timeout",
                                  self->config_.server, true));
  } else {
    self->Fail(MakeError(code::kTimeout,
                         "server " + std::to_string(self->config_.server) +
                             ": no answer within the statement timeout",
                         self->config_.server, true));
  }
}

void Connection::ContinueConnect() {
  switch (PQconnectPoll(conn_)) {
    case PGRES_POLLING_READING:
      if (!WatchSocket(UV_READABLE)) ConnectFailed(LostError(code::kConnectFailed));
      return;
    case PGRES_POLLING_WRITING:
      if (!WatchSocket(UV_WRITABLE)) ConnectFailed(LostError(code::kConnectFailed));
      return;
    case PGRES_POLLING_OK:
      break;
    default:
      ConnectFailed(LostError(code::kConnectFailed));
      return;
  }
  if (PQsetnonblocking(conn_, 1) != 0 || PQenterPipelineMode(conn_) != 1) {
    Fail(LostError(code::kConnectFailed));
    return;
  }
  To(State::kSetup);
  uv_timer_stop(timer_);
  if (!WatchSocket(UV_READABLE)) {
    Fail(LostError(code::kConnectionLost));
    return;
  }
  delegate_->OnConnected(this);
  if (!closed()) MarkDirty();
}

void Connection::Flush() {
  dirty_ = false;
  if (!open()) return;
  SendQueued();
  if (closed()) return;
  FlushOutput();
}

bool Connection::Send(const Statement& s) {
  std::vector<const char*> values(s.params.size());
  for (size_t i = 0; i < s.params.size(); ++i) {
    values[i] = s.is_null[i] ? nullptr : s.params[i].c_str();
  }
  const int n = static_cast<int>(values.size());
  switch (s.kind) {
    case Statement::Kind::kPrepare:
      return PQsendPrepare(conn_, s.name.c_str(), s.sql.c_str(), s.param_count, nullptr) == 1;
    case Statement::Kind::kPrepared: {
      const Sql::Prepared* p = nullptr;
      for (const Sql::Prepared& known : config_.statements) {
        if (s.name == known.key) p = &known;
      }
      if (p != nullptr && config_.unnamed) {
        return PQsendQueryParams(conn_, p->text.c_str(), n, nullptr, values.data(), nullptr,
                                 nullptr, 0) == 1;
      }
      const char* name = p != nullptr ? p->name.c_str() : s.name.c_str();
      return PQsendQueryPrepared(conn_, name, n, values.data(), nullptr, nullptr, 0) == 1;
    }
    case Statement::Kind::kParams:
      return PQsendQueryParams(conn_, s.sql.c_str(), n, nullptr, values.data(), nullptr, nullptr,
                               0) == 1;
  }
  return false;
}

bool Connection::Sync() { return PQpipelineSync(conn_) == 1; }

void Connection::SendQueued() {
  switch (pipeline_.SendQueued(*this, ready())) {
    case Pipeline::SendResult::kFailed:
      Fail(LostError(code::kConnectionLost));
      return;
    case Pipeline::SendResult::kSent:
      UpdateDeadline();
      return;
    case Pipeline::SendResult::kNothing:
      return;
  }
}

void Connection::FlushOutput() {
  int r = PQflush(conn_);
  if (r < 0) {
    Fail(LostError(code::kConnectionLost));
    return;
  }
  want_write_ = r == 1;
  UpdateInterest();
}

void Connection::UpdateInterest() {
  int events = UV_READABLE | (want_write_ ? UV_WRITABLE : 0);
  if (!WatchSocket(events)) Fail(LostError(code::kConnectionLost));
}

void Connection::HandleReadable() {
  if (!PQconsumeInput(conn_)) {
    Fail(LostError(code::kConnectionLost));
    return;
  }
  if (!ProcessResults()) return;  // closed
  if (PQstatus(conn_) == CONNECTION_BAD) {
    Fail(LostError(code::kConnectionLost));
    return;
  }
  // why: the server may have stopped reading until we read; now that we have,
  // push out whatever is still buffered.
  if (want_write_) FlushOutput();
}

bool Connection::ProcessResults() {
  while (pipeline_.head() != nullptr && !PQisBusy(conn_)) {
    PGresult* raw = PQgetResult(conn_);
    Op& head = *pipeline_.head();
    if (raw == nullptr) {  // end of one statement's results
      // Sync accounting: an op that a Sync follows waits for it; one that
      // shares its Sync with the ops after it is done with its statements.
      if (++head_statement_ >= head.statements.size() && head.stage() == Stage::kSent) {
        StatementsDone();
        if (closed()) return false;
      }
      continue;
    }
    ResultPtr result = AdoptResult(raw);
    switch (PQresultStatus(raw)) {
      case PGRES_PIPELINE_SYNC:
        Complete();
        if (closed()) return false;
        break;
      case PGRES_TUPLES_OK:
      case PGRES_COMMAND_OK:
        if (head_statement_ < head.results.size())
          head.results[head_statement_] = std::move(result);
        break;
      case PGRES_FATAL_ERROR:
        if (!head.error) {
          head.error = ResultError(raw, config_.server);
          if (!config_.unnamed) HintPooler(&head.error);
        }
        // After its last statement's results an error belongs to the COMMIT of
        // the whole batch (a deferred constraint, a serialization failure).
        head.outcome = head_statement_ >= head.statements.size() ? Outcome::kFailedAtCommit
                                                                 : Outcome::kFailed;
        break;
      case PGRES_PIPELINE_ABORTED:
        head.outcome = Outcome::kAborted;
        break;
      default:
        Fail(MakeError(code::kProtocol,
                       "server " + std::to_string(config_.server) + ": unexpected result status",
                       config_.server, true));
        return false;
    }
  }
  return !closed();
}

void Connection::StatementsDone() {
  pipeline_.HeadStatementsDone();
  head_statement_ = 0;
  UpdateDeadline();
}

// A Sync arrived: the pipeline settles its batch, or sends (some of) it again.
void Connection::Complete() {
  head_statement_ = 0;
  std::deque<OpPtr> settled = pipeline_.SyncArrived();
  UpdateDeadline();
  // why: the server sits idle until the next batch reaches it. Sending what
  // waits before the callbacks below run their JavaScript lets the two overlap
  // instead of taking turns. A send that fails hands the queued ops to the
  // delegate; the settled ones are still answered.
  if (ready() && pipeline_.CanSend()) {
    SendQueued();
    if (!closed()) FlushOutput();
  }
  if (!settled.empty() && !settled.front()->setup) {
    // Answered once this poll callback is done, a few at a time, so their
    // JavaScript and the server's next work overlap (Addon::RunDeliveries).
    for (OpPtr& op : settled) loop_->Deliver(std::move(op));
  } else {
    const bool closed_before = closed();
    for (OpPtr& op : settled) {
      if (op->done) op->done(*op);
      if (closed() && !closed_before) return;
    }
  }
  if (closed()) return;
  UpdateRef();
  if (retiring_ && pending() == 0) {
    delegate_->OnRetired(this);
    Close();
    return;
  }
  if (pipeline_.HasQueued()) MarkDirty();
}

void Connection::UpdateDeadline() {
  if (!open()) return;
  const Op* head = pipeline_.head();
  if (head == deadline_for_) return;
  deadline_for_ = head;
  if (head == nullptr || head->no_deadline) {
    uv_timer_stop(timer_);
  } else {
    // The deadline bounds how long the head op waits for its answer; ops behind
    // it start their own clock when they reach the head.
    uv_timer_start(timer_, OnTimer, static_cast<uint64_t>(config_.statement_timeout_ms), 0);
  }
}

void Connection::UpdateRef() {
  // Only work that someone waits for keeps the process alive; an idle or
  // reconnecting connection does not.
  bool busy = pending() > 0;
  for (uv_handle_t* h :
       {reinterpret_cast<uv_handle_t*>(poll_), reinterpret_cast<uv_handle_t*>(timer_)}) {
    if (h == nullptr) continue;
    if (busy) {
      uv_ref(h);
    } else {
      uv_unref(h);
    }
  }
}

void Connection::Fail(ErrorInfo error) {
  if (closed()) return;
  std::deque<OpPtr> ops = pipeline_.TakeAll();
  CloseHandles();
  // why: last use of `this` by this call chain; the delegate drops its pointer.
  delegate_->OnBroken(this, std::move(error), std::move(ops));
}

void Connection::Close() {
  if (closed()) return;
  pipeline_.TakeAll();
  CloseHandles();
}

std::deque<OpPtr> Connection::Withdraw() {
  if (closed()) return {};
  std::deque<OpPtr> ops = pipeline_.TakeAll();
  CloseHandles();  // may delete this
  return ops;
}

void Connection::CloseHandles() {
  To(State::kClosed);
  if (dirty_) loop_->UnscheduleFlush(this);
  dirty_ = false;
  // Stop watching before the socket goes away with PQfinish.
  if (poll_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), OnHandleClosed);
    ++pending_closes_;
    poll_ = nullptr;
  }
  if (timer_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_), OnHandleClosed);
    ++pending_closes_;
    timer_ = nullptr;
  }
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
  if (pending_closes_ == 0) delete this;
}

void Connection::OnHandleClosed(uv_handle_t* handle) {
  auto* self = static_cast<Connection*>(handle->data);
  Loop* loop = self->loop_;
  if (handle->type == UV_POLL) {
    delete reinterpret_cast<uv_poll_t*>(handle);
  } else {
    delete reinterpret_cast<uv_timer_t*>(handle);
  }
  if (--self->pending_closes_ == 0 && self->closed()) delete self;
  loop->HandleClosed();
}

}  // namespace spg
