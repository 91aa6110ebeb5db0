#include "connection.h"

#include <algorithm>
#include <string_view>
#include <unordered_set>
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

// why: PostgreSQL takes at most 1 GB in one message and drops the connection
// on a longer one; a merged write of many large values (escaped: up to twice
// their size) would reach it. A batch stops at this many bytes of parameters,
// far below that, so its arrays also stay cheap for the server to parse; an op
// larger than this goes in a batch of its own.
constexpr size_t kMaxBatchBytes = 32u << 20;

// Op::bytes: each parameter as an array element, in quotes and escaped.
size_t WireBytes(const Op& op) {
  size_t bytes = 0;
  for (const Statement& s : op.statements) {
    for (const std::string& p : s.params) {
      size_t escaped = 0;
      for (char c : p) escaped += (c == '"') | (c == '\\');
      bytes += p.size() + escaped + 3;
    }
  }
  return bytes;
}

}  // namespace

Statement Statement::Prepare(std::string name, std::string sql, int param_count) {
  Statement s;
  s.kind = Kind::kPrepare;
  s.name = std::move(name);
  s.sql = std::move(sql);
  s.param_count = param_count;
  return s;
}

Statement Statement::Prepared(std::string name) {
  Statement s;
  s.kind = Kind::kPrepared;
  s.name = std::move(name);
  return s;
}

Statement Statement::Text(std::string sql) {
  Statement s;
  s.kind = Kind::kParams;
  s.sql = std::move(sql);
  return s;
}

Statement& Statement::Bind(std::string value) {
  params.push_back(std::move(value));
  is_null.push_back(0);
  return *this;
}

Statement& Statement::BindNull() {
  params.emplace_back();
  is_null.push_back(1);
  return *this;
}

Connection::Connection(Loop* addon, ConnectionDelegate* delegate, ConnectionConfig config)
    : addon_(addon), delegate_(delegate), config_(std::move(config)) {
  addon_->Register(this);
}

Connection::~Connection() { addon_->Unregister(this); }

ErrorInfo Connection::Start() {
  phase_ = Phase::kConnecting;
  timer_ = new uv_timer_t;
  uv_timer_init(addon_->loop(), timer_);
  addon_->HandleOpened();
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
  op->results.resize(op->statements.size());
  if (op->bytes == 0) op->bytes = WireBytes(*op);
  bool behind_write = false;
  if (!op->key.empty()) {
    KeyCount& count = pending_keys_[op->key];
    behind_write = op->read_only && count.writes > 0;  // must see the writes issued before it
    ++count.ops;
    if (op->batchable) ++count.writes;
  }
  if (op->batchable || behind_write) {
    writes_.push_back(std::move(op));
  } else {
    others_.push_back(std::move(op));
  }
  UpdateRef();
  MarkDirty();
}

// Bookkeeping when an op leaves the connection (settled or handed back).
void Connection::Settled(const Op& op) {
  if (op.key.empty()) return;
  auto it = pending_keys_.find(op.key);
  if (it == pending_keys_.end()) return;
  if (op.batchable) --it->second.writes;
  if (--it->second.ops == 0) pending_keys_.erase(it);
}

void Connection::MarkReady() {
  ready_ = true;
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
  if (dirty_ || closed_) return;
  dirty_ = true;
  addon_->ScheduleFlush(this);
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
  if (poll_ != nullptr && phase_ == Phase::kConnecting) {
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), OnHandleClosed);
    ++pending_closes_;
    poll_ = nullptr;
  }
  if (poll_ == nullptr) {
    poll_ = new uv_poll_t;
    if (uv_poll_init_socket(addon_->loop(), poll_, fd) != 0) {
      delete poll_;
      poll_ = nullptr;
      return false;
    }
    addon_->HandleOpened();
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
  Loop* addon = self->addon_;
  {
    Loop::JsScope scope(addon);
    self->Poll(status, events);
  }
  addon->RunDeliveries();
}

void Connection::Poll(int status, int events) {
  if (closed_) return;
  if (phase_ == Phase::kConnecting) {
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
    if (closed_) return;
  }
  if ((events & UV_WRITABLE) && want_write_) FlushOutput();
}

void Connection::OnTimer(uv_timer_t* handle) {
  auto* self = static_cast<Connection*>(handle->data);
  Loop::JsScope scope(self->addon_);
  if (self->closed_) return;
  if (self->phase_ == Phase::kConnecting) {
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
  phase_ = Phase::kOpen;
  uv_timer_stop(timer_);
  if (!WatchSocket(UV_READABLE)) {
    Fail(LostError(code::kConnectionLost));
    return;
  }
  delegate_->OnConnected(this);
  if (!closed_) MarkDirty();
}

void Connection::Flush() {
  dirty_ = false;
  if (closed_ || phase_ != Phase::kOpen) return;
  SendQueued();
  if (closed_) return;
  FlushOutput();
}

bool Connection::SendStatement(const Statement& s) {
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

bool Connection::SendOne(Op& op) {
  for (const Statement& s : op.statements) {
    if (!SendStatement(s)) return false;
  }
  return !op.syncs || PQpipelineSync(conn_) == 1;
}

// How many ops from `first` (at most `limit`, of at most `max_bytes` together
// unless the first alone is larger) go out as one merged statement: neighbours
// of one statement each with the same merge, none sent alone, and distinct
// session ids where the merge needs them.
size_t Connection::MergeRun(Queue::const_iterator first, Queue::const_iterator end, size_t limit,
                            size_t max_bytes) {
  const Merge* merge = (*first)->merge;
  if (limit < 2 || merge == nullptr) return 1;
  std::unordered_set<std::string_view> keys;
  size_t n = 0, bytes = 0;
  for (auto it = first; it != end && n < limit; ++it, ++n) {
    const Op& op = **it;
    if (op.merge != merge || op.solo || op.statements.size() != 1) break;
    if (n > 0 && bytes + op.bytes > max_bytes) break;
    if (merge->distinct_keys && !keys.insert(op.key).second) break;
    bytes += op.bytes;
  }
  return n == 0 ? 1 : n;
}

// Moves the ops that rode along with `head`'s merged statement (next in
// sent_); each shares its results and takes the row of its place.
void Connection::TakeRiders(const Op& head, Queue* into) {
  for (size_t i = 0; i < head.riders && !sent_.empty(); ++i) {
    OpPtr rider = std::move(sent_.front());
    sent_.pop_front();
    rider->results = head.results;
    rider->row = static_cast<int>(i + 1);
    into->push_back(std::move(rider));
  }
}

// Sends the `n` ops at `*at` in `queue` as one merged statement (n > 1) or
// the first alone, followed by a Sync if `sync`; moves them to sent_ and
// advances `*at` past them.
bool Connection::SendRun(Queue& queue, Queue::iterator* at, size_t n, bool sync) {
  Op& head = ***at;
  head.syncs = sync;
  bool ok;
  if (n > 1) {
    std::vector<const Statement*> parts;
    parts.reserve(n);
    for (size_t i = 0; i < n; ++i) parts.push_back(&(*at)[i]->statements[0]);
    ok = SendStatement(head.merge->build(parts)) && (!sync || PQpipelineSync(conn_) == 1);
    head.riders = n - 1;
  } else {
    ok = SendOne(head);
  }
  if (!ok) return false;
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) (*at)[i]->syncs = false;
    sent_.push_back(std::move((*at)[i]));
  }
  *at = queue.erase(*at, *at + n);
  return true;
}

void Connection::SendQueued() {
  bool sent_any = false;
  // Reads and other single ops go out at once, pipelined. Reads waiting side by
  // side share one Sync (up to max_batch), and those of one kind one statement:
  // the server answers them in one send, and one failure only makes its
  // neighbours go again, as in a write batch. Everything else has a Sync of
  // its own.
  size_t reads_in_group = 0;
  for (auto it = others_.begin(); it != others_.end() && pending_sent() < config_.max_in_flight;) {
    const Op& op = **it;
    if (!ready_ && !op.setup) {
      ++it;
      continue;
    }
    const bool read = ready_ && op.read_only;
    const size_t room = config_.max_in_flight - pending_sent();
    const size_t n = read ? MergeRun(it, others_.end(),
                                     std::min(config_.max_batch - reads_in_group, room),
                                     kMaxBatchBytes)
                          : 1;
    const auto next = it + n;
    const bool group_next = read && next != others_.end() && (*next)->read_only &&
                            reads_in_group + n < config_.max_batch && n < room;
    if (!SendRun(others_, &it, n, !group_next)) {
      Fail(LostError(code::kConnectionLost));
      return;
    }
    reads_in_group = group_next ? reads_in_group + n : 0;
    sent_any = true;
  }
  // One write batch at a time: whatever waits when the previous one has
  // committed goes out together, nothing waits for more.
  // A batch ends at max_batch ops or at kMaxBatchBytes, whichever comes first.
  if (ready_ && !batch_in_flight_ && !writes_.empty()) {
    size_t n = 0, bytes = 0;
    while (!writes_.empty() && n < config_.max_batch && pending_sent() < config_.max_in_flight) {
      Op& op = *writes_.front();
      if (op.solo && n > 0) break;
      const size_t room = config_.max_in_flight - pending_sent();
      const size_t group = MergeRun(writes_.begin(), writes_.end(),
                                    std::min(config_.max_batch - n, room), kMaxBatchBytes - bytes);
      for (size_t i = 0; i < group; ++i) bytes += writes_[i]->bytes;
      const bool last = writes_.size() == group || n + group == config_.max_batch || op.solo ||
                        writes_[group]->solo || group >= room ||
                        bytes + writes_[group]->bytes > kMaxBatchBytes;
      for (size_t i = 0; i < group; ++i) writes_[i]->in_batch = true;
      auto front = writes_.begin();
      if (!SendRun(writes_, &front, group, last)) {
        Fail(LostError(code::kConnectionLost));
        return;
      }
      n += group;
      sent_any = true;
      if (last) break;
    }
    batch_in_flight_ = n > 0;
  }
  if (sent_any) UpdateDeadline();
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
  while (!sent_.empty() && !PQisBusy(conn_)) {
    PGresult* raw = PQgetResult(conn_);
    Op& head = *sent_.front();
    if (raw == nullptr) {  // end of one statement's results
      if (++head_statement_ >= head.statements.size() && !head.syncs) {
        StatementsDone();
        if (closed_) return false;
      }
      continue;
    }
    ResultPtr result = AdoptResult(raw);
    switch (PQresultStatus(raw)) {
      case PGRES_PIPELINE_SYNC:
        Complete();
        if (closed_) return false;
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
        if (head_statement_ >= head.statements.size()) head.failed_at_commit = true;
        break;
      case PGRES_PIPELINE_ABORTED:
        head.aborted = true;
        break;
      default:
        Fail(MakeError(code::kProtocol,
                       "server " + std::to_string(config_.server) + ": unexpected result status",
                       config_.server, true));
        return false;
    }
  }
  return !closed_;
}

// The head op has all its results but shares a Sync (and a commit) with ops
// sent after it: it waits for that commit, reads included, since a read in a
// batch may have seen the batch's own uncommitted writes.
void Connection::StatementsDone() {
  OpPtr op = std::move(sent_.front());
  sent_.pop_front();
  head_statement_ = 0;
  batch_.push_back(std::move(op));
  TakeRiders(*batch_.back(), &batch_);
  UpdateDeadline();
}

// A Sync arrived: the batch (ops in batch_ plus the head) has committed, or,
// if one of its statements or its COMMIT failed, PostgreSQL rolled all of it back.
void Connection::Complete() {
  std::deque<OpPtr> batch = std::move(batch_);
  batch_.clear();
  batch.push_back(std::move(sent_.front()));
  sent_.pop_front();
  TakeRiders(*batch.back(), &batch);
  head_statement_ = 0;
  if (batch.back()->in_batch) batch_in_flight_ = false;
  UpdateDeadline();

  bool failed = false, at_commit = false;
  for (const OpPtr& op : batch) {
    failed = failed || (op->error && !op->aborted);
    at_commit = at_commit || op->failed_at_commit;
  }
  std::deque<OpPtr> retry, settled;
  size_t riders_left = 0;      // of the merged statement being walked
  bool merged_failed = false;  // that statement failed
  for (OpPtr& op : batch) {
    // Rolled back or skipped for a neighbour's failure: send it again, in its
    // place, so one bad write neither fails nor loses the others. A failure at
    // COMMIT, or of a merged statement, names no op: each op is then sent
    // alone to find the culprit.
    bool in_failed_merge = false;
    if (op->riders > 0) {
      riders_left = op->riders;
      merged_failed = op->error && !op->aborted;
      in_failed_merge = merged_failed;
    } else if (riders_left > 0) {
      --riders_left;
      in_failed_merge = merged_failed;
    }
    const bool innocent = failed && !op->error;
    const bool suspect = (at_commit && batch.size() > 1) || in_failed_merge;
    if (innocent || suspect) {
      op->ClearOutcome();
      op->solo = op->solo || suspect;
      retry.push_back(std::move(op));
      continue;
    }
    Settled(*op);
    settled.push_back(std::move(op));
  }
  // Their place is the front of their queue: no other write batch is in flight,
  // and reads grouped with each other were sent before anything still queued.
  for (auto it = retry.rbegin(); it != retry.rend(); ++it) {
    auto& queue = (*it)->in_batch ? writes_ : others_;
    queue.push_front(std::move(*it));
  }
  // why: the server sits idle until the next batch reaches it. Sending what
  // waits before the callbacks below run their JavaScript lets the two overlap
  // instead of taking turns. A send that fails hands the queued ops to the
  // delegate; the settled ones are still answered.
  if (ready_ && (!others_.empty() || (!writes_.empty() && !batch_in_flight_))) {
    SendQueued();
    if (!closed_) FlushOutput();
  }
  if (!settled.empty() && !settled.front()->setup) {
    // Answered once this poll callback is done, a few at a time, so their
    // JavaScript and the server's next work overlap (Addon::RunDeliveries).
    for (OpPtr& op : settled) addon_->Deliver(std::move(op));
  } else {
    const bool closed_before = closed_;
    for (OpPtr& op : settled) {
      if (op->done) op->done(*op);
      if (closed_ && !closed_before) return;
    }
  }
  if (closed_) return;
  UpdateRef();
  if (retiring_ && pending() == 0) {
    delegate_->OnRetired(this);
    Close();
    return;
  }
  if (!others_.empty() || !writes_.empty()) MarkDirty();
}

void Connection::UpdateDeadline() {
  if (closed_ || phase_ != Phase::kOpen) return;
  const Op* head = sent_.empty() ? nullptr : sent_.front().get();
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

std::deque<OpPtr> Connection::TakeOps() {
  std::deque<OpPtr> ops = std::move(batch_);
  for (auto* queue : {&sent_, &writes_, &others_}) {
    for (auto& op : *queue) ops.push_back(std::move(op));
    queue->clear();
  }
  batch_.clear();
  pending_keys_.clear();
  batch_in_flight_ = false;
  for (auto& op : ops) {
    op->ClearOutcome();
    op->in_batch = op->solo = false;
  }
  return ops;
}

void Connection::Fail(ErrorInfo error) {
  if (closed_) return;
  std::deque<OpPtr> ops = TakeOps();
  CloseHandles();
  // why: last use of `this` by this call chain; the delegate drops its pointer.
  delegate_->OnBroken(this, std::move(error), std::move(ops));
}

void Connection::Close() {
  if (closed_) return;
  TakeOps();
  CloseHandles();
}

std::deque<OpPtr> Connection::Withdraw() {
  if (closed_) return {};
  std::deque<OpPtr> ops = TakeOps();
  CloseHandles();  // may delete this
  return ops;
}

void Connection::CloseHandles() {
  closed_ = true;
  phase_ = Phase::kClosed;
  if (dirty_) addon_->UnscheduleFlush(this);
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
  Loop* addon = self->addon_;
  if (handle->type == UV_POLL) {
    delete reinterpret_cast<uv_poll_t*>(handle);
  } else {
    delete reinterpret_cast<uv_timer_t*>(handle);
  }
  if (--self->pending_closes_ == 0 && self->closed_) delete self;
  addon->HandleClosed();
}

}  // namespace spg
