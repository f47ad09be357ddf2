"""Server errors as Python exceptions: one subclass per gRPC status code.

Every exception carries `.code` (a grpc.StatusCode) and `.message` (the server's text, which names
the offending field, e.g. "params: has 336 values; expected 337 for this model").
"""
import grpc


class BasinError(Exception):
    """Base class of every error reported by a Basin server (or by the channel to it)."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message, code=None, job_id=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.job_id = job_id  # set when the error is a failed/cancelled job's

    def __str__(self):
        name = self.code.name if isinstance(self.code, grpc.StatusCode) else str(self.code)
        where = f" (job {self.job_id})" if self.job_id else ""
        return f"{name}: {self.message}{where}"


class InvalidArgument(BasinError, ValueError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(BasinError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(BasinError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(BasinError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(BasinError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(BasinError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(BasinError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(BasinError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(BasinError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(BasinError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(BasinError, ConnectionError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(BasinError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(BasinError):
    code = grpc.StatusCode.UNAUTHENTICATED


class DeadlineExceeded(BasinError, TimeoutError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(BasinError):
    code = grpc.StatusCode.CANCELLED


class Unknown(BasinError):
    code = grpc.StatusCode.UNKNOWN


_BY_CODE = {cls.code: cls for cls in (
    InvalidArgument, NotFound, AlreadyExists, PermissionDenied, ResourceExhausted,
    FailedPrecondition, Aborted, OutOfRange, Unimplemented, Internal, Unavailable, DataLoss,
    Unauthenticated, DeadlineExceeded, Cancelled, Unknown)}


def error_for(code, message, job_id=None):
    """The exception for a grpc.StatusCode (or its name, e.g. "INVALID_ARGUMENT")."""
    if isinstance(code, str):
        code = getattr(grpc.StatusCode, code.upper(), grpc.StatusCode.UNKNOWN)
    cls = _BY_CODE.get(code, BasinError)
    return cls(message, code=code, job_id=job_id)


def from_rpc_error(err):
    """Converts a grpc.RpcError into the matching BasinError subclass."""
    try:
        code, details = err.code(), err.details()
    except Exception:  # not a call object
        code, details = grpc.StatusCode.UNKNOWN, str(err)
    return error_for(code, details or "")
