#include "data_dir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <set>
#include <vector>

#include "basin/error.hpp"
#include "basin/v1/basin.pb.h"
#include "sha256.hpp"
#include "scheduler.hpp"
#include "sqlite_db.hpp"
#include "store.hpp"

namespace basin::server {
namespace {

const char* const kDbName = "basin.db";
// SQLite's companions of basin.db: the write-ahead log, its index, a rollback journal.
const char* const kDbCompanions[] = {"-wal", "-shm", "-journal"};

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      names.push_back(e->d_name);
    }
  }
  closedir(d);
  return names;
}

bool lstat_path(const std::string& path, struct stat* st) { return lstat(path.c_str(), st) == 0; }

std::string octal_mode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

// The first 16 bytes of every SQLite 3 database file.
bool has_sqlite_header(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[16] = {};
  const ssize_t n = read(fd, buf, sizeof(buf));
  (void)close(fd);
  return n == 16 && std::memcmp(buf, "SQLite format 3", 16) == 0;
}

std::string utc_stamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Start-up guard

void guard_data_dir(const std::string& dir, bool allow_new_database) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      throw Error(ErrorCode::kInternal, "--data-dir " + dir + ": " + strerror(errno));
    }
    std::fprintf(stderr, "basind: initialising a new data dir %s\n", dir.c_str());
    return;
  }
  if (!S_ISDIR(st.st_mode)) invalid_argument("--data-dir " + dir + ": not a directory");

  const std::string db = dir + "/" + kDbName;
  std::string db_trouble;  // why basin.db cannot be the history of this data dir
  struct stat dbst;
  if (lstat_path(db, &dbst)) {
    if (dbst.st_size == 0) {
      db_trouble = db + " is empty (0 bytes)";
    } else if (!has_sqlite_header(db)) {
      db_trouble = db + " (" + std::to_string(dbst.st_size) + " bytes) is not an SQLite database";
    } else {
      return;  // the normal case: a database to open
    }
  }

  // No usable database. What else is here says whether this directory was used before.
  std::vector<std::string> signs;
  if (!db_trouble.empty()) signs.push_back(db_trouble);
  std::vector<std::string> others;
  for (const std::string& name : list_dir(dir)) {
    const std::string path = dir + "/" + name;
    if (name == kDbName || name == "lost+found") continue;  // a file system's root
    if (name == "blobs" || name == "tmp") {
      const size_t n = list_dir(path).size();
      if (n > 0) {
        signs.push_back(name + "/ holds " + std::to_string(n) +
                        (name == "blobs" ? " blob file(s)" : " upload file(s)"));
      }
      continue;
    }
    bool companion = false;
    for (const char* suffix : kDbCompanions) companion = companion || name == kDbName + std::string(suffix);
    struct stat cst;
    if (companion && lstat_path(path, &cst)) {
      signs.push_back(name + " (" + std::to_string(cst.st_size) + " bytes)");
    } else {
      others.push_back(name);
    }
  }
  if (!others.empty()) {
    const size_t shown = std::min<size_t>(others.size(), 8);
    std::string list = join(std::vector<std::string>(others.begin(), others.begin() + shown), ", ");
    if (shown < others.size()) list += " and " + std::to_string(others.size() - shown) + " more";
    signs.push_back("other entries: " + list);
  }
  if (signs.empty()) {
    std::fprintf(stderr, "basind: initialising a new data dir %s\n", dir.c_str());
    return;
  }
  if (!allow_new_database) {
    invalid_argument(
        "refusing to start: data dir " + dir + " shows signs of earlier use but has no usable job "
        "database " + db + ": " + join(signs, "; ") + ". Starting would begin an empty job "
        "history and every earlier job would be gone. If " + db + " was lost or damaged, restore "
        "it from a backup and verify with `basind --check --data-dir " + dir + "`; to start with "
        "a new, empty database anyway, pass --allow-new-database (the old basin.db files are kept "
        "as basin.db*.lost-<time>; blobs stay but must be uploaded again to be owned).");
  }
  // Moved aside, never deleted: a WAL next to an empty database may still hold the last
  // transactions, and that is for a person to look at.
  const std::string stamp = utc_stamp();
  std::vector<std::string> names = {kDbName};
  for (const char* suffix : kDbCompanions) names.push_back(kDbName + std::string(suffix));
  for (const std::string& name : names) {
    const std::string from = dir + "/" + name, to = from + ".lost-" + stamp;
    struct stat ist;
    if (!lstat_path(from, &ist)) continue;
    if (rename(from.c_str(), to.c_str()) != 0) {
      throw Error(ErrorCode::kInternal, "--allow-new-database: cannot rename " + from + " to " +
                                            to + ": " + strerror(errno));
    }
    std::fprintf(stderr, "basind: --allow-new-database: kept %s as %s\n", from.c_str(), to.c_str());
  }
  std::fprintf(stderr,
               "basind: WARNING: --allow-new-database: starting %s with a new, empty job database "
               "(found: %s)\n",
               dir.c_str(), join(signs, "; ").c_str());
}

// ---------------------------------------------------------------------------------------------
// File modes

namespace {

// Removes group/other bits from `path` when it has any; records "name 0644->0600" in *changed
// or a warning in *failed.
void tighten(const std::string& path, const std::string& label, std::vector<std::string>* changed,
             std::vector<std::string>* failed) {
  struct stat st;
  if (!lstat_path(path, &st) || S_ISLNK(st.st_mode)) return;  // links: the target is not ours
  if ((st.st_mode & 077) == 0) return;
  const mode_t tight = st.st_mode & 07700;
  if (chmod(path.c_str(), tight) != 0) {
    failed->push_back(label + " (" + octal_mode(st.st_mode) + "): " + strerror(errno));
    return;
  }
  changed->push_back(label + " " + octal_mode(st.st_mode) + "->" + octal_mode(tight));
}

}  // namespace

void tighten_data_dir_modes(const std::string& dir) {
  std::vector<std::string> changed, failed;
  tighten(dir, dir, &changed, &failed);
  tighten(dir + "/" + kDbName, kDbName, &changed, &failed);
  for (const char* suffix : kDbCompanions) {
    const std::string name = kDbName + std::string(suffix);
    tighten(dir + "/" + name, name, &changed, &failed);
  }
  for (const char* sub : {"blobs", "tmp"}) {
    const std::string path = dir + "/" + sub;
    tighten(path, std::string(sub) + "/", &changed, &failed);
    // One summary line per directory, not one per blob.
    std::vector<std::string> files_changed;
    for (const std::string& name : list_dir(path)) {
      tighten(path + "/" + name, name, &files_changed, &failed);
    }
    if (!files_changed.empty()) {
      changed.push_back(std::to_string(files_changed.size()) + " file(s) in " + sub + "/ (" +
                        files_changed.front() + (files_changed.size() > 1 ? ", ..." : "") + ")");
    }
  }
  if (!changed.empty()) {
    std::fprintf(stderr,
                 "basind: tightened permissions in %s (they hold every user's requests and "
                 "results; group/others had access): %s\n",
                 dir.c_str(), join(changed, ", ").c_str());
  }
  for (const std::string& f : failed) {
    std::fprintf(stderr, "basind: WARNING: cannot remove group/other access from %s/%s\n",
                 dir.c_str(), f.c_str());
  }
}

// ---------------------------------------------------------------------------------------------
// Exposure warnings

bool is_loopback_listen(const std::string& listen) {
  auto starts = [&](const char* p) { return listen.rfind(p, 0) == 0; };
  return starts("127.") || starts("localhost:") || starts("[::1]:") || starts("ipv4:127.") ||
         starts("ipv6:[::1]:") || starts("unix:") || starts("unix-abstract:");
}

void warn_about_exposure(const ServerOptions& opt) {
  if (opt.tokens_file.empty()) return;
  struct stat st;
  if (stat(opt.tokens_file.c_str(), &st) == 0) {
    const char* f = opt.tokens_file.c_str();
    const std::string mode = octal_mode(st.st_mode);
    if (st.st_mode & (S_IROTH | S_IWOTH)) {
      std::fprintf(stderr,
                   "basind: WARNING: --tokens %s is %s by every user of this machine (mode %s): "
                   "anyone can %s the bearer tokens; chmod 0600 %s\n",
                   f, (st.st_mode & S_IWOTH) ? "writable" : "readable", mode.c_str(),
                   (st.st_mode & S_IWOTH) ? "add" : "read", f);
    }
    // Group access is what lets basind read a root-owned secret with its group (the container
    // recipe: root:basin 0640); on a file basind owns it only lets other people in. Group write
    // lets the group add tokens either way.
    if ((st.st_mode & S_IWGRP) || ((st.st_mode & S_IRGRP) && st.st_uid == geteuid())) {
      std::fprintf(stderr,
                   "basind: WARNING: --tokens %s is %s by its group (mode %s), which basind "
                   "does not need; chmod 0600 %s (or 0640 when another user owns it)\n",
                   f, (st.st_mode & S_IWGRP) ? "writable" : "readable", mode.c_str(), f);
    }
  }
  if (opt.tls_cert.empty() && !is_loopback_listen(opt.listen)) {
    std::fprintf(stderr,
                 "basind: WARNING: INSECURE: bearer tokens are accepted on %s WITHOUT TLS: "
                 "tokens, requests and results cross the network in clear text, and anyone "
                 "who can see the traffic can capture a token and act as its user. Give "
                 "--tls-cert/--tls-key, or listen on 127.0.0.1 behind a TLS-terminating proxy.\n",
                 opt.listen.c_str());
  }
}

// ---------------------------------------------------------------------------------------------
// basind --check

namespace {

// The columns store.cpp creates (a database missing one would fail at the first query).
const std::map<std::string, std::vector<std::string>> kSchema = {
    {"jobs",
     {"seq", "id", "user", "state", "priority", "request", "created_ms", "started_ms",
      "finished_ms", "attempts", "error_code", "error_message", "result", "fraction"}},
    {"blob_owners", {"user", "hex", "size", "created_ms"}},
};

struct Findings {
  std::vector<std::string> problems, warnings;
  void problem(const std::string& s) { problems.push_back(s); }
  void warning(const std::string& s) { warnings.push_back(s); }
};

struct JobRef {
  std::string job, user, state, field;
};

std::string blob_hex(const std::string& id) { return id.rfind("sha256:", 0) == 0 ? id.substr(7) : id; }

bool is_hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// sha256 of a file, streamed; empty when it cannot be read.
std::string hash_file(const std::string& path, int64_t* size) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  Sha256 h;
  std::vector<char> buf(1 << 20);
  *size = 0;
  ssize_t n;
  while ((n = read(fd, buf.data(), buf.size())) > 0) {
    h.update(buf.data(), static_cast<size_t>(n));
    *size += n;
  }
  (void)close(fd);
  return n < 0 ? "" : h.hex_digest();
}

void check_mode(const std::string& path, const std::string& label, Findings* f) {
  struct stat st;
  if (lstat_path(path, &st) && !S_ISLNK(st.st_mode) && (st.st_mode & 077) != 0) {
    f->warning(label + ": mode " + octal_mode(st.st_mode) +
               " gives group/others access (basind removes it at start-up)");
  }
}

class DbCheck {
 public:
  DbCheck(const std::string& path, Findings* f, std::FILE* out) : f_(f), out_(out) {
    const int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr);
    if (rc != SQLITE_OK) {
      f_->problem(path + ": cannot open: " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc)));
      return;
    }
    (void)sqlite3_busy_timeout(db_, 5000);
    ok_ = true;
  }
  ~DbCheck() {
    if (db_ != nullptr) (void)sqlite3_close_v2(db_);
  }

  // Each step catches its own SQLite errors: a damaged file fails the step, and the report
  // still says as much as can be read.
  void run(const std::string& path) {
    if (!ok_) return;
    try {
      Statement st(db_, "PRAGMA integrity_check(100)");
      std::vector<std::string> lines;
      while (st.step()) lines.push_back(st.column_text(0));
      if (lines.size() == 1 && lines[0] == "ok") {
        std::fprintf(out_, "database: %s: integrity_check ok\n", path.c_str());
      } else {
        for (const std::string& l : lines) f_->problem(path + ": integrity_check: " + l);
      }
    } catch (const std::exception& e) {
      f_->problem(path + ": integrity_check could not run: " + e.what());
      return;
    }
    schema_ok_ = true;
    for (const auto& [table, columns] : kSchema) {
      try {
        std::set<std::string> have;
        Statement st(db_, "PRAGMA table_info(" + table + ")");
        while (st.step()) have.insert(st.column_text(1));
        if (have.empty()) {
          f_->problem(path + ": table '" + table + "' is missing");
          schema_ok_ = false;
          continue;
        }
        for (const std::string& c : columns) {
          if (have.count(c) == 0) {
            f_->problem(path + ": table '" + table + "' has no column '" + c + "'");
            schema_ok_ = false;
          }
        }
      } catch (const std::exception& e) {
        f_->problem(path + ": cannot read the schema of '" + table + "': " + e.what());
        schema_ok_ = false;
      }
    }
    if (schema_ok_) std::fprintf(out_, "database: schema ok\n");
  }

  // Jobs: states, decodable requests/results, blobs they refer to. Fills *refs by blob hex.
  void jobs(std::multimap<std::string, JobRef>* refs) {
    if (!schema_ok_) return;
    std::map<std::string, int64_t> by_state;
    int64_t total = 0;
    try {
      Statement st(db_, "SELECT id, user, state, request, result FROM jobs ORDER BY seq");
      while (st.step()) {
        ++total;
        const std::string id = st.column_text(0), user = st.column_text(1);
        const int64_t state = st.column_int64(2);
        const bool known = state >= static_cast<int>(JobState::kQueued) &&
                           state <= static_cast<int>(JobState::kCancelled);
        const std::string state_name =
            known ? job_state_name(static_cast<JobState>(state)) : "unknown";
        by_state[state_name] += 1;
        const std::string what = "job " + id + " (user " + user + ", " + state_name + ")";
        if (!known) f_->problem(what + ": state " + std::to_string(state) + " is not a job state");
        v1::AnalyzeRequest req;
        if (!req.ParseFromString(st.column_blob(3))) {
          f_->problem(what + ": its stored request does not decode as basin.v1.AnalyzeRequest");
        } else {
          auto add = [&](const std::string& blob_id, const char* field) {
            refs->emplace(blob_hex(blob_id), JobRef{id, user, state_name, field});
          };
          if (req.model_source_case() == v1::AnalyzeRequest::kOnnxBlobId) {
            add(req.onnx_blob_id(), "onnx_blob_id");
          }
          const std::pair<const v1::TensorSource*, const char*> sources[] = {
              {&req.params(), "params.blob_id"},
              {&req.inputs(), "inputs.blob_id"},
              {&req.targets(), "targets.blob_id"}};
          for (const auto& [src, field] : sources) {
            if (src->source_case() == v1::TensorSource::kBlobId) add(src->blob_id(), field);
          }
        }
        if (state == static_cast<int>(JobState::kSucceeded)) {
          v1::AnalyzeResponse resp;
          if (st.column_is_null(4)) {
            f_->problem(what + ": succeeded but has no stored result");
          } else if (!resp.ParseFromString(st.column_blob(4))) {
            f_->problem(what + ": its stored result does not decode as basin.v1.AnalyzeResponse");
          }
        }
      }
    } catch (const std::exception& e) {
      f_->problem("reading the jobs table failed after " + std::to_string(total) + " row(s): " +
                  e.what());
    }
    std::string counts;
    for (const auto& [name, n] : by_state) counts += (counts.empty() ? "" : ", ") + name + " " + std::to_string(n);
    std::fprintf(out_, "jobs: %lld%s%s%s\n", static_cast<long long>(total),
                 counts.empty() ? "" : " (", counts.c_str(), counts.empty() ? "" : ")");
  }

  // blob_owners rows: hex -> (user -> size).
  std::map<std::string, std::map<std::string, int64_t>> owners() {
    std::map<std::string, std::map<std::string, int64_t>> out;
    if (!schema_ok_) return out;
    try {
      Statement st(db_, "SELECT hex, user, size FROM blob_owners");
      while (st.step()) out[st.column_text(0)][st.column_text(1)] = st.column_int64(2);
    } catch (const std::exception& e) {
      f_->problem(std::string("reading the blob_owners table failed: ") + e.what());
    }
    return out;
  }

 private:
  Findings* f_;
  std::FILE* out_;
  sqlite3* db_ = nullptr;
  bool ok_ = false, schema_ok_ = false;
};

}  // namespace

int check_data_dir(const std::string& dir, std::FILE* out) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::fprintf(out, "basind --check: %s: no such directory\n", dir.c_str());
    return 2;
  }
  std::fprintf(out, "basind --check: data dir %s\n", dir.c_str());
  Findings f;
  check_mode(dir, dir, &f);

  // ---- the database
  const std::string db = dir + "/" + kDbName;
  std::multimap<std::string, JobRef> refs;  // blob hex -> jobs that name it
  std::map<std::string, std::map<std::string, int64_t>> owners;
  struct stat dbst;
  if (!lstat_path(db, &dbst)) {
    f.problem(db + " is missing");
  } else if (dbst.st_size == 0) {
    f.problem(db + " is empty (0 bytes)");
  } else if (!has_sqlite_header(db)) {
    f.problem(db + " (" + std::to_string(dbst.st_size) + " bytes) is not an SQLite database");
  } else {
    std::fprintf(out, "database: %s, %lld bytes\n", db.c_str(), static_cast<long long>(dbst.st_size));
    DbCheck check(db, &f, out);
    check.run(db);
    check.jobs(&refs);
    owners = check.owners();
  }
  check_mode(db, kDbName, &f);
  for (const char* suffix : kDbCompanions) {
    check_mode(db + suffix, kDbName + std::string(suffix), &f);
  }

  // ---- blobs: every file against its name and the ownership rows
  const std::string blobs = dir + "/blobs";
  std::set<std::string> present, corrupt;
  int64_t blob_bytes = 0;
  for (const std::string& name : list_dir(blobs)) {
    const std::string path = blobs + "/" + name;
    struct stat bst;
    if (!lstat_path(path, &bst) || !S_ISREG(bst.st_mode)) {
      f.warning("blobs/" + name + ": not a regular file");
      continue;
    }
    if (!is_hex64(name)) {
      f.warning("blobs/" + name + ": not a blob name (64 lowercase hex digits); basind never reads it");
      continue;
    }
    present.insert(name);
    check_mode(path, "blobs/" + name, &f);
    int64_t size = 0;
    const std::string got = hash_file(path, &size);
    blob_bytes += size;
    if (got.empty()) {
      f.problem("blobs/" + name + ": cannot be read: " + strerror(errno));
      corrupt.insert(name);
      continue;
    }
    if (got != name) {
      f.problem("blobs/" + name + ": corrupt: its " + std::to_string(size) +
                " bytes hash to sha256:" + got + ", not to its name");
      corrupt.insert(name);
    }
    auto o = owners.find(name);
    if (o == owners.end()) {
      f.warning("blobs/" + name + ": no ownership record (an upload interrupted between its "
                "rename and its database row; harmless, reused by the next upload of it)");
      continue;
    }
    for (const auto& [user, recorded] : o->second) {
      if (recorded != size) {
        f.problem("blobs/" + name + ": " + std::to_string(size) + " bytes on disk, but recorded "
                  "as " + std::to_string(recorded) + " bytes for user " + user);
      }
    }
  }
  for (const auto& [hex, users] : owners) {
    if (present.count(hex) != 0) continue;
    for (const auto& [user, size] : users) {
      f.problem("blobs/" + hex + ": recorded for user " + user + " (" + std::to_string(size) +
                " bytes) but missing from disk");
    }
  }
  for (const auto& [hex, ref] : refs) {
    const std::string what = "job " + ref.job + " (user " + ref.user + ", " + ref.state + ")";
    if (present.count(hex) == 0) {
      f.problem(what + ": " + ref.field + " names blob sha256:" + hex + ", which is missing from blobs/");
    } else if (corrupt.count(hex) != 0) {
      f.problem(what + ": " + ref.field + " names blob sha256:" + hex + ", whose content is corrupt");
    } else {
      auto o = owners.find(hex);
      if (o == owners.end() || o->second.count(ref.user) == 0) {
        f.problem(what + ": " + ref.field + " names blob sha256:" + hex + ", which user " +
                  ref.user + " does not own (no blob_owners row)");
      }
    }
  }
  std::fprintf(out, "blobs: %zu file(s), %lld bytes, %zu verified against their sha256 names; "
                    "%zu ownership record(s); %zu blob reference(s) from jobs\n",
               present.size(), static_cast<long long>(blob_bytes), present.size() - corrupt.size(),
               owners.size(), refs.size());

  // ---- uploads that never finished
  const std::vector<std::string> tmp = list_dir(dir + "/tmp");
  for (const std::string& name : tmp) {
    f.warning("tmp/" + name + ": stray temp file of an interrupted upload (nothing refers to "
              "it; basind removes it at start-up)");
  }
  std::fprintf(out, "temp files: %zu\n", tmp.size());

  for (const std::string& p : f.problems) std::fprintf(out, "PROBLEM: %s\n", p.c_str());
  for (const std::string& w : f.warnings) std::fprintf(out, "warning: %s\n", w.c_str());
  if (f.problems.empty()) {
    std::fprintf(out, "basind --check: clean (%zu warning(s))\n", f.warnings.size());
    return 0;
  }
  std::fprintf(out, "basind --check: %zu problem(s), %zu warning(s)\n", f.problems.size(),
               f.warnings.size());
  return 1;
}

}  // namespace basin::server
