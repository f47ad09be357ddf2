// basind's data directory before the Store opens it, and `basind --check`.
//
//   guard_data_dir       refuses to start on a data dir that was used before but whose job
//                        database is missing, empty or not SQLite (starting would silently begin
//                        an empty job history); --allow-new-database moves such files aside
//   tighten_data_dir_modes  basin.db, its -wal/-shm/-journal, blobs and uploads hold every
//                        user's requests and results: owner-only (files 0600, dirs 0700)
//   warn_about_exposure  a --tokens file others can read; tokens accepted in clear text
//   check_data_dir       `basind --check --data-dir D`: verifies without serving
//
// Everything here logs to stderr with the "basind: " prefix, like main().
#pragma once

#include <cstdio>
#include <string>

#include "server_options.hpp"

namespace basin::server {

// Throws basin::Error naming the files found and the flag when `dir` holds signs of earlier use
// (blobs, uploads, a WAL, other files) but no usable basin.db. With `allow_new_database` the
// damaged database files are renamed to "<name>.lost-<UTC time>" instead and a new database
// will be created. A missing or empty directory passes (first start).
void guard_data_dir(const std::string& dir, bool allow_new_database);

// chmod go-rwx on the data dir, its database files, blobs/, tmp/ and the files in them; logs
// what changed and warns about what could not be changed.
void tighten_data_dir_modes(const std::string& dir);

// Start-up warnings: a tokens file readable or writable by others (or by a group basind does
// not need), tokens accepted on a non-loopback address without TLS.
void warn_about_exposure(const ServerOptions& opt);

// True for addresses only this machine can reach: 127.x, localhost, [::1], unix sockets.
bool is_loopback_listen(const std::string& listen);

// Verifies the data dir (SQLite integrity_check, schema, every blob against its sha256 name and
// the database's records, jobs referring to missing blobs, stray temp files) without changing
// anything; prints what it found to `out`. Returns the exit status: 0 clean (warnings allowed),
// 1 problems found, 2 nothing to check (no such directory).
int check_data_dir(const std::string& dir, std::FILE* out);

}  // namespace basin::server
