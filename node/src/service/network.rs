//! How the service reaches other nodes: the [`PeerNetwork`] trait, which the
//! transport implements over pinned mutual TLS.

use std::future::Future;
use std::pin::Pin;

use super::Result;
use crate::protocol::{ReadAnswer, SignedBytes};
use crate::roster::{RosterMember, SignedRoster};
use crate::sharing::ShareId;

/// A boxed future, for the object-safe [`PeerNetwork`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The calls this node makes on other members' peer APIs. Errors are
/// [`super::ServiceError::Unreachable`] or [`super::ServiceError::Remote`].
pub trait PeerNetwork: Send + Sync + std::fmt::Debug {
    /// Fetches a fresh KeyPackage from `member`.
    fn fetch_key_package<'a>(&'a self, member: &'a RosterMember) -> BoxFuture<'a, Result<Vec<u8>>>;
    /// Delivers a Welcome for `share` to `member`; returns the epoch it joined.
    fn deliver_welcome<'a>(
        &'a self,
        member: &'a RosterMember,
        share: &'a ShareId,
        welcome: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64>>;
    /// Delivers a commit for `share` to `member`; returns its epoch after it.
    fn deliver_commit<'a>(
        &'a self,
        member: &'a RosterMember,
        share: &'a ShareId,
        commit: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64>>;
    /// Asks the owner of `share` for a fresh Welcome; returns the owner's epoch.
    fn request_welcome<'a>(
        &'a self,
        owner: &'a RosterMember,
        share: &'a ShareId,
    ) -> BoxFuture<'a, Result<u64>>;
    /// Sends a signed read request to the owner.
    fn read_share<'a>(
        &'a self,
        owner: &'a RosterMember,
        request: SignedBytes,
    ) -> BoxFuture<'a, Result<ReadAnswer>>;
    /// Offers a roster version (a proposal, or one `adopted` here) to
    /// `member`; returns its roster version after the offer.
    fn offer_roster<'a>(
        &'a self,
        member: &'a RosterMember,
        roster: &'a SignedRoster,
        adopted: bool,
    ) -> BoxFuture<'a, Result<u64>>;
    /// Fetches the adopted versions `member` has from `from` on, decoded
    /// (each within the size limit) but not verified, with the version it
    /// says it has in force.
    fn fetch_chain<'a>(
        &'a self,
        member: &'a RosterMember,
        from: u64,
    ) -> BoxFuture<'a, Result<(Vec<SignedRoster>, u64)>>;
    /// Asks `holder` to confirm that it holds `dossier`.
    fn confirm_dossier<'a>(
        &'a self,
        holder: &'a RosterMember,
        dossier: &'a crate::types::DossierId,
    ) -> BoxFuture<'a, Result<()>>;
    /// Delivers a notice to `member`.
    fn notify<'a>(
        &'a self,
        member: &'a RosterMember,
        notice: &'a crate::protocol::Notice,
    ) -> BoxFuture<'a, Result<()>>;
    /// Asks `member` when it last wrote each of its sections of `dossier`
    /// (this node being the dossier's référent's member).
    fn freshness<'a>(
        &'a self,
        member: &'a RosterMember,
        dossier: &'a crate::types::DossierId,
    ) -> BoxFuture<'a, Result<Vec<(crate::types::Section, i64)>>>;
    /// Fetches `member`'s latest signed checkpoint note.
    fn get_checkpoint<'a>(&'a self, member: &'a RosterMember) -> BoxFuture<'a, Result<String>>;
    /// This node's checkpoint `member` last witnessed (the signed note, not
    /// verified here), if it witnessed one.
    fn get_witnessed<'a>(
        &'a self,
        member: &'a RosterMember,
    ) -> BoxFuture<'a, Result<Option<String>>>;
    /// Fetches a consistency proof of `member`'s log from `old` to `new`.
    fn get_consistency<'a>(
        &'a self,
        member: &'a RosterMember,
        old: u64,
        new: u64,
    ) -> BoxFuture<'a, Result<Vec<crate::audit::merkle::Hash>>>;
    /// Fetches `member`'s signed manifest (not verified: the auditor does).
    fn get_manifest<'a>(
        &'a self,
        member: &'a RosterMember,
    ) -> BoxFuture<'a, Result<crate::audit::bundle::SignedManifest>>;
    /// Fetches leaves of `member`'s log from `from`, as it shows them to this node.
    fn get_leaves<'a>(
        &'a self,
        member: &'a RosterMember,
        from: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<super::LeafPage>>;
    /// Fetches a page of `member`'s entries about `dossier` from `from`,
    /// with their proofs against its tree of `size` leaves (its latest
    /// checkpoint when 0).
    fn get_dossier_audit<'a>(
        &'a self,
        member: &'a RosterMember,
        dossier: &'a crate::types::DossierId,
        from: u64,
        size: u64,
        holding: Option<&'a super::Holding>,
    ) -> BoxFuture<'a, Result<super::DossierPart>>;
    /// Gives `member` this node's cosignature of its checkpoint `body`.
    fn cosign<'a>(
        &'a self,
        member: &'a RosterMember,
        body: &'a str,
        line: &'a str,
    ) -> BoxFuture<'a, Result<()>>;
    /// Fetches the open proposals `member` keeps on top of its version in
    /// force, decoded (each within the size limit) but not verified.
    fn fetch_proposals<'a>(
        &'a self,
        member: &'a RosterMember,
    ) -> BoxFuture<'a, Result<Vec<SignedRoster>>>;
    /// Offers census entries (this node's own) to `member`; returns how
    /// many it kept.
    fn offer_census<'a>(
        &'a self,
        member: &'a RosterMember,
        entries: &'a [SignedBytes],
    ) -> BoxFuture<'a, Result<usize>>;
    /// Fetches `member`'s own census entries newer than `known` (its
    /// services' versions kept here, by id), decoded but not verified, and
    /// whether more remain.
    fn fetch_census<'a>(
        &'a self,
        member: &'a RosterMember,
        known: &'a std::collections::HashMap<String, u64>,
    ) -> BoxFuture<'a, Result<(Vec<SignedBytes>, bool)>>;
    /// Fetches `member`'s signed counts for `period` (not verified here).
    fn get_indicators<'a>(
        &'a self,
        member: &'a RosterMember,
        period: &'a str,
    ) -> BoxFuture<'a, Result<SignedBytes>>;
}
