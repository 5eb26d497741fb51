//! Where executions come from: the Valohai API client (also used for the
//! local control plane, which speaks the same API), the log follower that
//! never drops a line, and the scanner that finds SSH announcements.

pub mod credentials;
pub mod follow;
pub mod model;
pub mod pagelines;
pub mod pagestream;
pub mod scanner;
pub mod valohai;

pub use model::{Execution, LogEvent, Status, Stream};
pub use valohai::{ApiClient, ApiError};
