//! The node's verifiable audit log: an append-only file of events, hashed as an
//! RFC 6962 Merkle tree, with checkpoints signed by the node key.
//!
//! Appends are group-committed: one writer thread takes every event queued,
//! writes them, calls `fdatasync` once, and only then acknowledges each. A read
//! is answered only after its event is acknowledged, so no access goes unlogged.

pub mod bundle;
mod index;
pub mod merkle;
pub mod note;
pub mod report;
pub mod verify;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::crypto::{NodeKey, PublicKey};
use crate::types::{ConsentId, DossierId, GrantId, MemberId, Role, Section, UserName};
use merkle::{Hash, Tiled};
use note::Checkpoint;

/// Largest event accepted in the log (bytes of JSON).
pub const MAX_EVENT: usize = 64 * 1024;

/// The audit log origin (checkpoint key name) of a member: `maillon/<member>`.
pub fn origin(member: &MemberId) -> String {
    format!("maillon/{member}")
}

/// Most events appended in one group commit.
const MAX_BATCH: usize = 4096;

/// Errors from the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log file could not be read or written.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The log on disk is damaged or does not match its last signed checkpoint.
    #[error("audit log is corrupt: {0}")]
    Corrupt(String),
    /// An event is larger than [`MAX_EVENT`].
    #[error("audit event is {0} bytes; the limit is {MAX_EVENT}")]
    TooLarge(usize),
    /// A write failed or the log failed its check: it refuses appends, and
    /// so every change, until an operator mends it and restarts the node.
    #[error(
        "the audit log refuses appends (a write or its integrity check failed); the node's log says why"
    )]
    Unavailable,
    /// A checkpoint or proof did not verify.
    #[error("audit verification failed: {0}")]
    Verify(String),
    /// A proof was asked for leaves or sizes the log does not hold.
    #[error("{0}")]
    Range(String),
}

/// Something that happened at this node and must be accountable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuditEvent {
    /// The node adopted a roster version.
    RosterAdopted {
        /// Version adopted.
        version: u64,
        /// Hex hash of its canonical bytes.
        hash: String,
    },
    /// A roster version was proposed, here or at a peer.
    RosterProposed {
        /// The candidate's version.
        version: u64,
        /// Hex hash of the candidate's canonical bytes.
        hash: String,
        /// The member that proposed it.
        proposer: MemberId,
        /// The admin at this node who proposed it, if it was proposed here.
        by: Option<UserName>,
        /// What it changes, in plain words.
        changes: Vec<String>,
    },
    /// A member's signature on a proposed roster version was added.
    RosterApproved {
        /// The candidate's version.
        version: u64,
        /// Hex hash of the candidate's canonical bytes.
        hash: String,
        /// The member whose signature was added.
        member: MemberId,
        /// The admin at this node who approved, if the signature is this node's.
        by: Option<UserName>,
    },
    /// This node's admin declined to sign a proposed roster version.
    RosterRejected {
        /// The candidate's version.
        version: u64,
        /// Hex hash of the candidate's canonical bytes.
        hash: String,
        /// The admin who declined.
        by: UserName,
        /// Why, in the admin's words.
        reason: String,
    },
    /// A roster version or proposal was refused.
    RosterRefused {
        /// The version it claims.
        version: u64,
        /// Hex hash of its canonical bytes.
        hash: String,
        /// The peer that offered it, if it came from one.
        from: Option<MemberId>,
        /// The machine-readable reason.
        code: String,
        /// Why, in one line.
        reason: String,
    },
    /// Two different valid roster versions carry the same number: proof of
    /// equivocation by the voters who signed both. The first adopted stands.
    RosterEquivocation {
        /// The version number both carry.
        version: u64,
        /// Hex hash of the version this node adopted.
        adopted: String,
        /// Hex hash of the other, kept as evidence.
        other: String,
        /// The peer that offered the other, if it came from one.
        from: Option<MemberId>,
    },
    /// A node-local user was created.
    UserCreated {
        /// The node-local user concerned.
        user: UserName,
        /// The role it was given.
        role: Role,
        /// Who created it (`None` at node initialisation).
        by: Option<UserName>,
    },
    /// A node-local user got a new token; the old one no longer works.
    UserTokenRotated {
        /// The node-local user concerned.
        user: UserName,
        /// The admin who rotated it.
        by: UserName,
        /// Hex SHA-256 of the new token (what a restart puts in force).
        token_sha256: String,
        /// When the new token stops working (Unix seconds).
        expires_at: i64,
    },
    /// An admin took a backup of the whole node (its store, log and keys).
    BackupMade {
        /// The admin (`None`: taken offline from the folder, the node stopped).
        by: Option<UserName>,
    },
    /// An admin gave a user a one-time link to log in to the web console.
    ConsoleLinkIssued {
        /// The user it logs in.
        user: UserName,
        /// The admin who gave it.
        by: UserName,
        /// When it stops working (Unix seconds).
        expires_at: i64,
    },
    /// A user logged in to the web console.
    ConsoleLogin {
        /// The user.
        user: UserName,
        /// How: `link` (a one-time link) or `oidc` (the identity provider).
        method: String,
    },
    /// A login to the web console was refused.
    ConsoleLoginRefused {
        /// Why, in a few words (never the link itself).
        reason: String,
    },
    /// A node-local user was given another role.
    UserRoleChanged {
        /// The node-local user concerned.
        user: UserName,
        /// Its new role.
        role: Role,
        /// The admin who changed it.
        by: UserName,
    },
    /// A node-local user's identity at the institution's identity provider
    /// (the value of the console's configured claim) was set or cleared.
    UserIdentityLinked {
        /// The node-local user concerned.
        user: UserName,
        /// The identity that logs it in to the console (`None`: cleared).
        identity: Option<String>,
        /// The admin who set it.
        by: UserName,
    },
    /// This member published a service of the census of aids (or withdrew
    /// it): the entry its node signed, which a restart puts in force if the
    /// store lacks it. No personal data.
    AidPublished {
        /// The service's id.
        service: String,
        /// The entry's version.
        version: u64,
        /// Whether the service was withdrawn.
        withdrawn: bool,
        /// The admin who published it.
        by: UserName,
        /// The signed entry, base64 of its bytes.
        entry: String,
        /// Its signature, base64.
        signature: String,
    },
    /// A node-local user was removed; its token no longer works.
    UserRemoved {
        /// The node-local user concerned.
        user: UserName,
        /// The admin who removed it.
        by: UserName,
    },
    /// A dossier was opened at this node.
    DossierOpened {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The user at this node who did it.
        by: UserName,
    },
    /// This node attached to a dossier another member holds.
    DossierAttached {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The member that confirmed it holds the dossier.
        from: MemberId,
        /// The user at this node who did it.
        by: UserName,
    },
    /// This node confirmed to a member that it holds a dossier.
    DossierConfirmed {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The member attaching to it.
        to: MemberId,
    },
    /// The holder named the dossier's référent de parcours (a hand-over when
    /// it moves to another member, on the person's consent).
    ReferentSet {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The référent's member.
        member: MemberId,
        /// The référent, a user at that member.
        user: UserName,
        /// The consent the hand-over rests on, for a member other than this one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        consent: Option<ConsentId>,
        /// The caseworker at this node who did it.
        by: UserName,
    },
    /// The dossier's holder told this node who the référent is now.
    ReferentNoted {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The référent's member.
        member: MemberId,
        /// The référent, a user at that member.
        user: UserName,
        /// The holder that told it.
        from: MemberId,
        /// Since when, at the holder (Unix seconds).
        since: i64,
        /// Every member that holds the dossier, as the holder listed them.
        partners: Vec<MemberId>,
    },
    /// This node told the dossier's référent's member when it last wrote
    /// each of its sections (not their content).
    FreshnessAnswered {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The référent's member that asked.
        to: MemberId,
    },
    /// The dossier's parcours ended: every share of it ends here.
    DossierClosed {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// Why, from a closed list.
        reason: crate::types::ClosureReason,
        /// The caseworker who closed it, at the holder.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserName>,
        /// The holder that told this node, elsewhere.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<MemberId>,
        /// Elsewhere, when the holder closed it (retention counts from then).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<i64>,
    },
    /// Everything this node kept of the dossier was erased (its key first);
    /// only this log's opaque entries remain.
    DossierErased {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// On what ground.
        ground: crate::types::ErasureGround,
        /// The caseworker who asked, at the holder.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserName>,
        /// The holder that told this node, elsewhere.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<MemberId>,
    },
    /// A peer presented a history that does not extend the one this node
    /// witnessed (two histories, a smaller tree, a bad proof or signature):
    /// the evidence is kept for the auditors.
    WitnessAlarm {
        /// The peer.
        member: MemberId,
        /// What it did, in one line.
        reason: String,
    },
    /// This node wrote its copy of a section.
    SectionWritten {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// Which section of the dossier.
        section: Section,
        /// The user at this node who did it.
        by: UserName,
    },
    /// A consent was recorded.
    ConsentGranted {
        /// The consent concerned.
        consent: ConsentId,
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// Sections covered.
        sections: Vec<Section>,
        /// Members that may read.
        audience: Vec<MemberId>,
        /// Why, in the person's words.
        purpose: String,
        /// The legal ground.
        basis: crate::types::LegalBasis,
        /// How the person gave it.
        collection: crate::types::Collection,
        /// First day it holds.
        valid_from: crate::types::Date,
        /// Last day it holds.
        until: crate::types::Date,
        /// Sections masked from every member.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        masked: Vec<Section>,
        /// The caseworker who recorded it.
        by: UserName,
    },
    /// A caseworker or auditor printed a consent's receipt.
    ConsentShown {
        /// The consent concerned.
        consent: ConsentId,
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The user at this node who did it.
        by: UserName,
    },
    /// A caseworker read this node's own copy of a section.
    SectionRead {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// Which section of the dossier.
        section: Section,
        /// The user at this node who did it.
        by: UserName,
    },
    /// A caseworker searched this node's dossiers (the words are not kept:
    /// they name people).
    DossiersSearched {
        /// The user at this node who searched.
        by: UserName,
        /// How many dossiers the search showed.
        found: u32,
    },
    /// A caseworker looked at a dossier's page: the identity typed at this
    /// desk and which sections, consents and référent it has (no content).
    DossierConsulted {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The user at this node who did it.
        by: UserName,
    },
    /// A caseworker looked for the aids of the census the person may be
    /// entitled to, from the sections of the dossier it may read (each
    /// section's read is logged on its own).
    AidsMatched {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The user at this node who did it.
        by: UserName,
        /// How many services were proposed.
        proposed: u32,
        /// The services proposed, as `member/service` (no personal data:
        /// the census is public to members).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        services: Vec<String>,
    },
    /// A caseworker oriented the person to another member for one of its
    /// services (at the sender, with the signed orientation).
    OrientationSent {
        /// The orientation.
        orientation: crate::types::OrientationId,
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The receiving member.
        to: MemberId,
        /// The service's id at `to`.
        service: String,
        /// The consent it rests on.
        consent: ConsentId,
        /// The user at this node who did it.
        by: UserName,
        /// The signed orientation and its signature, sealed under the
        /// dossier's key (unreadable once it is erased), base64.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        sealed: String,
        /// Before the words were sealed: the signed message in clear,
        /// base64 (entries of earlier versions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Before the words were sealed: its signature, base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// An orientation came from another member (at the receiver).
    OrientationReceived {
        /// The orientation.
        orientation: crate::types::OrientationId,
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The sending member.
        from: MemberId,
        /// The service's id at this node.
        service: String,
        /// The signed orientation and its signature, sealed under the
        /// dossier's key (unreadable once it is erased), base64.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        sealed: String,
        /// Before the words were sealed: the signed message in clear,
        /// base64 (entries of earlier versions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Before the words were sealed: its signature, base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// A step of an orientation: taken here by a caseworker (at the
    /// receiving member, `by`), or told by the receiving member (at the
    /// sender, `from`).
    OrientationStepped {
        /// The orientation.
        orientation: crate::types::OrientationId,
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// Where it stands now.
        status: crate::types::OrientationStatus,
        /// The service's id at the receiving member.
        service: String,
        /// The user at this node who took it, if it was taken here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserName>,
        /// The member that took it, if it was told.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<MemberId>,
        /// The signed step and its signature, sealed under the dossier's
        /// key, base64.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        sealed: String,
        /// Before the words were sealed: the signed message in clear,
        /// base64 (entries of earlier versions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Before the words were sealed: its signature, base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// The référent convened a coordination commission on a dossier (at the
    /// convener, with the signed convocation).
    CommissionConvened {
        /// The commission.
        commission: crate::types::CommissionId,
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The members invited.
        participants: Vec<MemberId>,
        /// The user at this node who convened it.
        by: UserName,
        /// The signed convocation and its signature, sealed under the
        /// dossier's key (unreadable once it is erased), base64.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        sealed: String,
        /// Before the words were sealed: the signed message in clear,
        /// base64 (entries of earlier versions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Before the words were sealed: its signature, base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// A convocation to another member's commission (at a participant).
    CommissionInvited {
        /// The commission.
        commission: crate::types::CommissionId,
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The convening member.
        from: MemberId,
        /// The signed convocation and its signature, sealed under the
        /// dossier's key (unreadable once it is erased), base64.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        sealed: String,
        /// Before the words were sealed: the signed message in clear,
        /// base64 (entries of earlier versions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Before the words were sealed: its signature, base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// A commission's minutes: closed here by its convener (`by`), or
    /// received from it (`from`).
    CommissionMinutes {
        /// The commission.
        commission: crate::types::CommissionId,
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// How many decisions.
        decisions: u32,
        /// The user at this node who closed it, if closed here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserName>,
        /// The convening member, if received.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<MemberId>,
        /// The signed minutes and their signature, sealed under the
        /// dossier's key, base64.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        sealed: String,
        /// Before the words were sealed: the signed message in clear,
        /// base64 (entries of earlier versions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Before the words were sealed: its signature, base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// A caseworker or auditor listed the commissions kept here.
    CommissionsListed {
        /// The user at this node who did it.
        by: UserName,
        /// How many it showed.
        shown: u32,
    },
    /// A vigilance alert raised here (the alert's words sealed with a key of
    /// its own, destroyed when it is purged: the entry then keeps only its
    /// id, recipient and concern).
    AlertRaised {
        /// The alert.
        alert: crate::types::AlertId,
        /// The member it goes to.
        to: MemberId,
        /// What worries.
        concern: crate::types::AlertConcern,
        /// The user at this node who raised it.
        by: UserName,
        /// The signed alert and its signature, sealed at rest, base64.
        sealed: String,
    },
    /// A vigilance alert received from the member where it was raised
    /// (sealed likewise).
    AlertReceived {
        /// The alert.
        alert: crate::types::AlertId,
        /// The member where it was raised.
        from: MemberId,
        /// What worries.
        concern: crate::types::AlertConcern,
        /// The signed alert and its signature, sealed at rest, base64.
        sealed: String,
    },
    /// A caseworker took an alert received here into account, or closed it.
    AlertHandled {
        /// The alert.
        alert: crate::types::AlertId,
        /// `taken` or `closed`.
        status: crate::types::AlertStatus,
        /// The outcome, when closed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<crate::types::AlertOutcome>,
        /// The user at this node who did it.
        by: UserName,
    },
    /// The recipient said an alert raised here was received, or taken into
    /// account.
    AlertAcknowledged {
        /// The alert.
        alert: crate::types::AlertId,
        /// `received` or `taken`.
        status: crate::types::AlertStatus,
        /// The recipient.
        from: MemberId,
    },
    /// An alert's time ran out: its words' key was destroyed and it was
    /// removed here.
    AlertPurged {
        /// The alert.
        alert: crate::types::AlertId,
    },
    /// Someone listed the alerts kept here.
    AlertsListed {
        /// The user at this node who did it.
        by: UserName,
        /// How many it showed.
        shown: u32,
    },
    /// A caseworker or auditor listed this node's orientations.
    OrientationsListed {
        /// The user at this node who did it.
        by: UserName,
        /// How many it showed.
        shown: u32,
    },
    /// A caseworker or auditor listed the consents of a dossier.
    ConsentsListed {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The user at this node who did it.
        by: UserName,
    },
    /// A consent was revoked.
    ConsentRevoked {
        /// The consent concerned.
        consent: ConsentId,
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The caseworker who recorded the revocation.
        by: UserName,
    },
    /// The owner added a member to a share's MLS group.
    GroupMemberAdded {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// Which section of the dossier.
        section: Section,
        /// The member added.
        member: MemberId,
        /// The group's epoch after the commit.
        epoch: u64,
    },
    /// The owner removed a member from a share's MLS group.
    GroupMemberRemoved {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// Which section of the dossier.
        section: Section,
        /// The member removed.
        member: MemberId,
        /// The group's epoch after the commit.
        epoch: u64,
    },
    /// The owner made a share's group anew with its new signing key (after
    /// a rotation); its members come back through fresh Welcomes.
    GroupRekeyed {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// Which section of the dossier.
        section: Section,
    },
    /// This node joined another owner's share group.
    GroupJoined {
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// Which section of the dossier.
        section: Section,
        /// The member that owns the share and runs its group.
        owner: MemberId,
        /// The epoch joined at.
        epoch: u64,
    },
    /// The owner answered a read of one of its sections.
    ReadGranted {
        /// Hex SHA-256 of the signed request bytes.
        request: String,
        /// The reading member.
        reader: MemberId,
        /// The user at the reader.
        user: UserName,
        /// The user's role.
        role: Role,
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// Which section of the dossier.
        section: Section,
        /// The consent that allowed it, if one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        consent: Option<ConsentId>,
        /// The break-glass access that allowed it, if one did (a flagged entry).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        break_glass: Option<GrantId>,
        /// The stated purpose.
        purpose: String,
        /// The request's nonce (hex), remembered from the log across a
        /// restart to refuse its replay.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        nonce: String,
    },
    /// The owner let a reader in without consent, for a grave and imminent
    /// danger the charter names, until a time the charter sets.
    BreakGlassGranted {
        /// The access's id.
        grant: GrantId,
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The reading member.
        reader: MemberId,
        /// The user at the reader who broke the glass.
        user: UserName,
        /// The user's role there.
        role: Role,
        /// The sections it opens.
        sections: Vec<Section>,
        /// Why, in the user's words.
        justification: String,
        /// When it ends (Unix seconds).
        until: i64,
    },
    /// A break-glass access ended: the reader left the groups it joined.
    BreakGlassEnded {
        /// The access's id.
        grant: GrantId,
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
    },
    /// An auditor reviewed a break-glass access.
    BreakGlassReviewed {
        /// The access's id.
        grant: GrantId,
        /// The member that granted it (this node, or the one that told it).
        owner: MemberId,
        /// The dossier the access was to (absent in entries written before
        /// the person's report gathered reviews from every member).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dossier: Option<DossierId>,
        /// The auditor.
        by: UserName,
        /// The auditor's comment.
        comment: String,
    },
    /// The owner of a dossier's sections told this node (the référent's
    /// member) of a break-glass access.
    BreakGlassNotified {
        /// The access's id.
        grant: GrantId,
        /// The member that granted it.
        owner: MemberId,
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// The reading member.
        reader: MemberId,
        /// The sections it opens.
        sections: Vec<Section>,
        /// When the owner granted it (Unix seconds).
        granted_at: i64,
        /// When it ends (Unix seconds).
        until: i64,
    },
    /// The owner refused a read.
    ReadDenied {
        /// Hex SHA-256 of the signed request bytes.
        request: String,
        /// The reading member.
        reader: MemberId,
        /// The user at the reader.
        user: UserName,
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// Which section of the dossier.
        section: Section,
        /// Why, in one line (what the refused party was told).
        reason: String,
        /// The request's nonce (hex), remembered from the log across a
        /// restart to refuse its replay.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        nonce: String,
    },
    /// A reader logged the owner's receipt for a section it read.
    ReceiptLogged {
        /// The owner that answered.
        owner: MemberId,
        /// The local user who read.
        user: UserName,
        /// The dossier the entry is about (its opaque id only).
        dossier: DossierId,
        /// Which section of the dossier.
        section: Section,
        /// Hex SHA-256 of the signed request bytes.
        request: String,
        /// The owner's leaf index for the access.
        owner_leaf: u64,
        /// The break-glass access it was read under, if it was (a flagged entry).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        break_glass: Option<GrantId>,
        /// The owner's signed receipt itself, base64 of its bytes: an owner
        /// that later rewrites its log without the read is caught by it.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        receipt: String,
        /// The owner's signature over it (context `maillon/v1/receipt`), base64.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        receipt_signature: String,
    },
}

/// Every kind of audit event, as entries name it (`"event"`).
pub const EVENT_KINDS: &[&str] = &[
    "roster_adopted",
    "roster_proposed",
    "roster_approved",
    "roster_rejected",
    "roster_refused",
    "roster_equivocation",
    "user_created",
    "user_token_rotated",
    "backup_made",
    "console_link_issued",
    "console_login",
    "console_login_refused",
    "user_removed",
    "user_role_changed",
    "user_identity_linked",
    "aid_published",
    "dossier_opened",
    "dossier_attached",
    "dossier_confirmed",
    "referent_set",
    "referent_noted",
    "freshness_answered",
    "dossier_closed",
    "dossier_erased",
    "witness_alarm",
    "section_written",
    "consent_granted",
    "consent_shown",
    "section_read",
    "dossiers_searched",
    "dossier_consulted",
    "consents_listed",
    "consent_revoked",
    "group_member_added",
    "group_member_removed",
    "group_rekeyed",
    "group_joined",
    "read_granted",
    "break_glass_granted",
    "break_glass_ended",
    "break_glass_reviewed",
    "break_glass_notified",
    "read_denied",
    "receipt_logged",
];

impl AuditEvent {
    /// The dossier the event is about, if it is about one.
    pub fn dossier(&self) -> Option<&DossierId> {
        use AuditEvent as E;
        match self {
            E::DossierOpened { dossier, .. }
            | E::DossierAttached { dossier, .. }
            | E::DossierConfirmed { dossier, .. }
            | E::ReferentSet { dossier, .. }
            | E::ReferentNoted { dossier, .. }
            | E::FreshnessAnswered { dossier, .. }
            | E::DossierClosed { dossier, .. }
            | E::DossierErased { dossier, .. }
            | E::SectionWritten { dossier, .. }
            | E::ConsentGranted { dossier, .. }
            | E::ConsentShown { dossier, .. }
            | E::SectionRead { dossier, .. }
            | E::ConsentsListed { dossier, .. }
            | E::DossierConsulted { dossier, .. }
            | E::AidsMatched { dossier, .. }
            | E::OrientationSent { dossier, .. }
            | E::OrientationReceived { dossier, .. }
            | E::OrientationStepped { dossier, .. }
            | E::CommissionConvened { dossier, .. }
            | E::CommissionInvited { dossier, .. }
            | E::CommissionMinutes { dossier, .. }
            | E::ConsentRevoked { dossier, .. }
            | E::GroupMemberAdded { dossier, .. }
            | E::GroupMemberRemoved { dossier, .. }
            | E::GroupRekeyed { dossier, .. }
            | E::GroupJoined { dossier, .. }
            | E::ReadGranted { dossier, .. }
            | E::BreakGlassGranted { dossier, .. }
            | E::BreakGlassEnded { dossier, .. }
            | E::BreakGlassNotified { dossier, .. }
            | E::ReadDenied { dossier, .. }
            | E::ReceiptLogged { dossier, .. } => Some(dossier),
            E::BreakGlassReviewed { dossier, .. } => dossier.as_ref(),
            E::RosterAdopted { .. }
            | E::RosterProposed { .. }
            | E::RosterApproved { .. }
            | E::RosterRejected { .. }
            | E::RosterRefused { .. }
            | E::RosterEquivocation { .. }
            | E::UserCreated { .. }
            | E::UserRemoved { .. }
            | E::UserRoleChanged { .. }
            | E::UserIdentityLinked { .. }
            | E::AidPublished { .. }
            | E::UserTokenRotated { .. }
            | E::BackupMade { .. }
            | E::ConsoleLinkIssued { .. }
            | E::ConsoleLogin { .. }
            | E::ConsoleLoginRefused { .. }
            | E::DossiersSearched { .. }
            | E::OrientationsListed { .. }
            | E::CommissionsListed { .. }
            | E::AlertRaised { .. }
            | E::AlertReceived { .. }
            | E::AlertHandled { .. }
            | E::AlertAcknowledged { .. }
            | E::AlertPurged { .. }
            | E::AlertsListed { .. }
            | E::WitnessAlarm { .. } => None,
        }
    }

    /// The members the event names as the other party of what happened
    /// (the reader, the owner, the attacher or holder, a consent's
    /// recipient, a group's member): who else holds the dossier, or may.
    pub fn parties(&self) -> Vec<&MemberId> {
        use AuditEvent as E;
        match self {
            E::DossierAttached { from, .. } => vec![from],
            E::DossierConfirmed { to, .. } | E::FreshnessAnswered { to, .. } => vec![to],
            E::ReferentSet { member, .. } => vec![member],
            E::ReferentNoted {
                member,
                from,
                partners,
                ..
            } => partners.iter().chain([member, from]).collect(),
            E::ConsentGranted { audience, .. } => audience.iter().collect(),
            E::GroupMemberAdded { member, .. } | E::GroupMemberRemoved { member, .. } => {
                vec![member]
            }
            E::GroupJoined { owner, .. } | E::ReceiptLogged { owner, .. } => vec![owner],
            E::OrientationSent { to, .. } => vec![to],
            E::OrientationReceived { from, .. } => vec![from],
            E::OrientationStepped { from, .. } => from.iter().collect(),
            E::AlertRaised { to, .. } => vec![to],
            E::CommissionConvened { participants, .. } => participants.iter().collect(),
            E::CommissionInvited { from, .. } => vec![from],
            E::CommissionMinutes { from, .. } => from.iter().collect(),
            E::AlertReceived { from, .. } | E::AlertAcknowledged { from, .. } => vec![from],
            E::ReadGranted { reader, .. }
            | E::ReadDenied { reader, .. }
            | E::BreakGlassGranted { reader, .. } => vec![reader],
            E::BreakGlassNotified { owner, reader, .. } => vec![owner, reader],
            E::BreakGlassReviewed { owner, .. } => vec![owner],
            E::DossierClosed { from, .. } | E::DossierErased { from, .. } => from.iter().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether, by this event, the node that logged it let `member` in on
    /// the dossier: a read or break-glass access granted to it, a consent
    /// naming it, a group it was added to, its attachment confirmed, the
    /// référent named at it. (A refusal names a member and grants nothing.)
    pub fn grants_to(&self, member: &MemberId) -> bool {
        use AuditEvent as E;
        match self {
            E::ReadGranted { reader, .. } | E::BreakGlassGranted { reader, .. } => reader == member,
            E::ConsentGranted { audience, .. } => audience.contains(member),
            E::GroupMemberAdded { member: m, .. } | E::ReferentSet { member: m, .. } => m == member,
            E::DossierConfirmed { to, .. } => to == member,
            _ => false,
        }
    }

    /// Whether the event is the logging node's own opening of, or
    /// attachment to, a dossier: what makes it hold it.
    pub fn holds(&self) -> Option<&DossierId> {
        match self {
            AuditEvent::DossierOpened { dossier, .. }
            | AuditEvent::DossierAttached { dossier, .. } => Some(dossier),
            _ => None,
        }
    }

    /// Whether the event names `member` among its [`parties`](Self::parties).
    pub fn names(&self, member: &MemberId) -> bool {
        self.parties().contains(&member)
    }

    /// Whether every member may see the event in full, whoever asks: what
    /// the federation's governance did. Everything else is about a dossier,
    /// or about this node's own staff, and shown only where the charter
    /// allows.
    pub fn is_federation_business(&self) -> bool {
        matches!(
            self,
            AuditEvent::RosterAdopted { .. }
                | AuditEvent::RosterApproved { .. }
                | AuditEvent::RosterRefused { .. }
                | AuditEvent::RosterEquivocation { .. }
                | AuditEvent::WitnessAlarm { .. }
        )
    }
}

/// One leaf of the log: an event and when it was recorded (Unix seconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When the node recorded it.
    pub time: i64,
    /// What happened.
    #[serde(flatten)]
    pub event: AuditEvent,
}

impl AuditEntry {
    /// The leaf bytes: the entry's JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses leaf bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AuditError> {
        serde_json::from_slice(bytes)
            .map_err(|e| AuditError::Corrupt(format!("undecodable entry: {e}")))
    }
}

struct LogState {
    /// The tree above its tiles; the leaves and each entry's offset are
    /// in the leaf index, read when a proof or a page needs them.
    tree: merkle::Tiled,
    /// The tree's right edge: a checkpoint's root without reading a tile.
    frontier: merkle::Frontier,
    failed: bool,
}

struct Job {
    data: Vec<u8>,
    reply: oneshot::Sender<Result<u64, AuditError>>,
}

/// How many of its last checkpoints a log remembers for witnesses to cosign.
pub const RECENT_CHECKPOINTS: usize = 64;

/// Most appends queued for the writer; past it, appenders wait.
const MAX_QUEUED: usize = 16 * 1024;

/// Tiles' leaves kept while one answer's proofs are made (8 KiB each).
const TILES_KEPT: usize = 64;

/// Logs shorter than this are read whole and checked at open; longer ones
/// open from their leaf index and are checked in the background.
pub const CHECKED_AT_OPEN: usize = 50_000;

/// The frontier of the last checkpoint, saved beside it (not synced: one
/// that does not match the checkpoint is hashed again from the leaves).
const FRONTIER_FILE: &str = "checkpoint.frontier";

/// The first bytes of a log file: its format.
const FILE_MAGIC: &[u8; 16] = b"maillon-audit-2\n";

/// Bytes of a batch header: payload length, entry count, header check, payload check.
const BATCH_HEADER: usize = 4 + 4 + 4 + 8;

/// The append-only audit log of one node.
///
/// The file is [`FILE_MAGIC`] then batches, one per group commit: a header
/// (payload length and entry count as big-endian `u32`, 4 bytes of SHA-256
/// over those 8 bytes, 8 bytes of SHA-256 over the payload), then the
/// payload, each entry as a big-endian `u32` length and its JSON. Damage is
/// told from a torn write: only the last batch may be incomplete or fail its
/// check (it was never acknowledged), and only if nothing follows it.
pub struct AuditLog {
    path: PathBuf,
    origin: String,
    state: Arc<RwLock<LogState>>,
    /// The leaf index, read in place.
    records: Arc<index::Records>,
    jobs: mpsc::Sender<Job>,
    /// One checkpoint is signed and persisted at a time; the last ones
    /// signed, newest last (witnesses cosign one of them).
    checkpointing: std::sync::Mutex<std::collections::VecDeque<String>>,
    /// The check of a log opened from its leaf index.
    integrity: Arc<std::sync::Mutex<Integrity>>,
    /// How long appends take, submission to `fdatasync`.
    append_latency: crate::metrics::LatencyHistogram,
}

/// Where the check of a log's every entry stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Integrity {
    /// Opened from its leaf index; the whole log is being read again.
    Checking,
    /// Every entry decodes, matches the index, and the last checkpoint
    /// covers them; `entries` were checked.
    Verified {
        /// How many entries were checked.
        entries: u64,
    },
    /// The log does not match its index or its checkpoint: the log refuses
    /// every append.
    Failed(String),
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_owned(),
        source,
    }
}

fn check8(data: &[u8]) -> [u8; 8] {
    let h = crate::crypto::sha256(data);
    [h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]
}

/// Encodes one batch of entries.
fn encode_batch(entries: &[&[u8]]) -> Vec<u8> {
    let mut payload = Vec::new();
    for e in entries {
        payload.extend_from_slice(&(e.len() as u32).to_be_bytes());
        payload.extend_from_slice(e);
    }
    let mut out = Vec::with_capacity(BATCH_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    let head = check8(&out[..8]);
    out.extend_from_slice(&head[..4]);
    out.extend_from_slice(&check8(&payload));
    out.extend_from_slice(&payload);
    out
}

/// The entries of a log file's bytes.
struct Frames {
    entries: Vec<Vec<u8>>,
    offsets: Vec<u64>,
    /// Length of the valid prefix of the file; what follows is a torn batch.
    valid_len: u64,
}

fn be32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// Decodes a log file's bytes: every batch up to the end, or up to a torn
/// last batch; damage anywhere before it is [`AuditError::Corrupt`].
fn decode_frames(all: &[u8]) -> Result<Frames, AuditError> {
    let corrupt = |at: usize, what: &str| AuditError::Corrupt(format!("{what} at byte {at}"));
    let mut frames = Frames {
        entries: Vec::new(),
        offsets: Vec::new(),
        valid_len: 0,
    };
    if all.is_empty() {
        return Ok(frames);
    }
    if all.len() < FILE_MAGIC.len() {
        if FILE_MAGIC.starts_with(all) {
            return Ok(frames);
        }
        return Err(corrupt(0, "not a maillon audit log"));
    }
    if &all[..FILE_MAGIC.len()] != FILE_MAGIC {
        return Err(corrupt(
            0,
            "not a maillon audit log (or another format version)",
        ));
    }
    frames.valid_len = FILE_MAGIC.len() as u64;
    decode_batches(
        &all[FILE_MAGIC.len()..],
        FILE_MAGIC.len() as u64,
        &mut frames,
    )?;
    Ok(frames)
}

/// Decodes the batches in `all`, which start at byte `base` of the log
/// file, into `frames`: up to the end, or up to a torn last batch.
fn decode_batches(all: &[u8], base: u64, frames: &mut Frames) -> Result<(), AuditError> {
    let corrupt =
        |at: usize, what: &str| AuditError::Corrupt(format!("{what} at byte {}", base + at as u64));
    let mut pos = 0usize;
    while pos < all.len() {
        let rest = &all[pos..];
        if rest.len() < BATCH_HEADER {
            break; // a torn header at the very end
        }
        let (len, count) = (be32(&rest[0..4]), be32(&rest[4..8]));
        if check8(&rest[..8])[..4] != rest[8..12] {
            if rest.iter().all(|&b| b == 0) {
                break; // space allocated for a write that never landed
            }
            return Err(corrupt(pos, "damaged batch header"));
        }
        if rest.len() < BATCH_HEADER + len {
            break; // the last batch, cut short
        }
        let payload = &rest[BATCH_HEADER..BATCH_HEADER + len];
        if check8(payload) != rest[12..20] {
            if rest.len() == BATCH_HEADER + len {
                break; // the last batch, partly written
            }
            return Err(corrupt(pos, "damaged batch"));
        }
        let mut at = 0;
        for _ in 0..count {
            if at + 4 > payload.len() {
                return Err(corrupt(pos, "batch holds fewer entries than it says"));
            }
            let n = be32(&payload[at..at + 4]);
            if n > MAX_EVENT || at + 4 + n > payload.len() {
                return Err(corrupt(pos + BATCH_HEADER + at, "oversized entry"));
            }
            let data = &payload[at + 4..at + 4 + n];
            AuditEntry::from_bytes(data)?;
            frames.offsets.push(base + (pos + BATCH_HEADER + at) as u64);
            frames.entries.push(data.to_vec());
            at += 4 + n;
        }
        if at != payload.len() {
            return Err(corrupt(pos, "batch holds more bytes than its entries"));
        }
        pos += BATCH_HEADER + len;
        frames.valid_len = base + pos as u64;
    }
    Ok(())
}

/// Where a log's entries after its leaf index start, and the bytes from
/// there to the end of the file; `None` when the index does not fit the
/// log (it starts elsewhere, goes backwards, or runs past the file).
fn tail_after_index(
    file: &mut File,
    file_len: u64,
    offsets: &[u64],
) -> std::io::Result<Option<(u64, Vec<u8>)>> {
    let first = (FILE_MAGIC.len() + BATCH_HEADER) as u64;
    let (Some(&start), Some(&last)) = (offsets.first(), offsets.last()) else {
        return Ok(None);
    };
    if start != first || !offsets.windows(2).all(|w| w[0] < w[1]) || last + 4 > file_len {
        return Ok(None);
    }
    let mut magic = [0u8; FILE_MAGIC.len()];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut magic)?;
    let mut len = [0u8; 4];
    file.seek(SeekFrom::Start(last))?;
    file.read_exact(&mut len)?;
    let end = last + 4 + u64::from(u32::from_be_bytes(len));
    if &magic != FILE_MAGIC || end > file_len {
        return Ok(None);
    }
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(end))?;
    file.read_to_end(&mut tail)?;
    Ok(Some((end, tail)))
}

/// Reads the first `len` bytes of the log again and checks that their
/// `known` entries decode and are the ones the index holds (offsets and leaf
/// hashes), that the saved tiles are theirs, and that the last checkpoint
/// covers them. A log that fails
/// refuses every append, and says why.
fn check_in_background(
    path: &Path,
    len: u64,
    known: usize,
    covered: Option<Checkpoint>,
    state: &RwLock<LogState>,
    records: &index::Records,
    integrity: &std::sync::Mutex<Integrity>,
) {
    let started = std::time::Instant::now();
    let checked = (|| -> Result<u64, String> {
        let mut all = Vec::new();
        File::open(path)
            .and_then(|f| f.take(len).read_to_end(&mut all))
            .map_err(|e| format!("reading the log: {e}"))?;
        let frames = decode_frames(&all).map_err(|e| e.to_string())?;
        if frames.entries.len() < known {
            return Err(format!(
                "the log holds {} entries, its index {known}",
                frames.entries.len()
            ));
        }
        let hashes: Vec<Hash> = frames.entries[..known]
            .iter()
            .map(|e| merkle::leaf_hash(e))
            .collect();
        let indexed = records
            .read(0, known as u64)
            .map_err(|e| format!("reading the leaf index: {e}"))?;
        if let Some(i) = (0..known).find(|&i| indexed[i] != (frames.offsets[i], hashes[i])) {
            return Err(format!("entry {i} is not the one its index holds"));
        }
        let (tiles, _) = merkle::Tiled::tiles_of(&hashes);
        {
            let st = match state.read() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if let Some(t) = (0..tiles.len()).find(|&t| st.tree.tiles().get(t) != Some(&tiles[t])) {
                return Err(format!("tile {t} is not the one the log's entries hash to"));
            }
        }
        if let Some(cp) = covered
            && !covers(&hashes, &cp)
        {
            return Err("the log does not match its last signed checkpoint".into());
        }
        Ok(known as u64)
    })();
    let outcome = match checked {
        Ok(entries) => {
            tracing::info!(
                entries,
                ms = started.elapsed().as_millis() as u64,
                "audit log checked in the background"
            );
            Integrity::Verified { entries }
        }
        Err(why) => {
            tracing::error!(path = %path.display(), %why, "the audit log fails its check: refusing every append");
            match state.write() {
                Ok(mut g) => g.failed = true,
                Err(p) => p.into_inner().failed = true,
            }
            Integrity::Failed(why)
        }
    };
    match integrity.lock() {
        Ok(mut g) => *g = outcome,
        Err(p) => *p.into_inner() = outcome,
    }
}

/// Whether a checkpoint covers a prefix of `leaves` with the right root.
fn covers(leaves: &[Hash], cp: &Checkpoint) -> bool {
    usize::try_from(cp.size)
        .ok()
        .filter(|&size| size <= leaves.len())
        .is_some_and(|size| merkle::root_parallel(&leaves[..size]) == cp.root)
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, checks it against its last signed
    /// checkpoint, and starts the group-commit writer. A log that holds
    /// entries but no readable, valid checkpoint is refused (fail closed).
    pub fn open(dir: &Path, origin: String, key: &PublicKey) -> Result<Self, AuditError> {
        Self::open_with_keys(dir, origin, std::slice::from_ref(key))
    }

    /// [`AuditLog::open`], accepting a last checkpoint signed by any of
    /// `keys`: every signing key the node has held (a rotated key signed the
    /// checkpoints before the rotation; the new key signs the next ones).
    pub fn open_with_keys(
        dir: &Path,
        origin: String,
        keys: &[PublicKey],
    ) -> Result<Self, AuditError> {
        Self::open_checking(dir, origin, keys, CHECKED_AT_OPEN)
    }

    /// [`AuditLog::open_with_keys`]: a log of fewer than `checked_at_open`
    /// entries is read whole and checked before it opens; a longer one with
    /// a leaf index that fits it opens from the index, its last checkpoint
    /// checked against the frontier saved with it, and the whole log is
    /// checked in the background ([`AuditLog::integrity`]).
    pub fn open_checking(
        dir: &Path,
        origin: String,
        keys: &[PublicKey],
        checked_at_open: usize,
    ) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join("audit.log");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let file_len = file.metadata().map_err(io_err(&path))?.len();
        let indexed = index::read(dir);
        let from_index = if indexed.offsets.len() >= checked_at_open.max(1) {
            tail_after_index(&mut file, file_len, &indexed.offsets).map_err(io_err(&path))?
        } else {
            None
        };
        // The entries after the index; a tail that does not decode from
        // where the index ends means the index does not fit: read it all.
        let from_index = from_index.and_then(|(end, tail)| {
            let mut frames = Frames {
                entries: Vec::new(),
                offsets: Vec::new(),
                valid_len: end,
            };
            match decode_batches(&tail, end, &mut frames) {
                Ok(()) => Some(frames),
                Err(e) => {
                    tracing::warn!(error = %e, "the leaf index does not fit the audit log; reading the whole log");
                    None
                }
            }
        });
        // `kept`: how many records of the index a whole read confirmed.
        let (offsets, leaves, valid_len, checked, kept) = match from_index {
            Some(frames) => {
                let known = indexed.offsets.len();
                let (mut offsets, mut leaves) = (indexed.offsets, indexed.leaves);
                leaves.extend(frames.entries.iter().map(|e| merkle::leaf_hash(e)));
                offsets.extend(frames.offsets);
                (offsets, leaves, frames.valid_len, false, known)
            }
            None => {
                let mut all = Vec::new();
                file.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
                file.read_to_end(&mut all).map_err(io_err(&path))?;
                let Frames {
                    entries,
                    offsets,
                    valid_len,
                } = decode_frames(&all)?;
                let leaves: Vec<Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
                let known = indexed.offsets.len();
                let fits = known <= offsets.len()
                    && indexed.offsets[..] == offsets[..known]
                    && indexed.leaves[..] == leaves[..known];
                (
                    offsets,
                    leaves,
                    valid_len,
                    true,
                    if fits { known } else { 0 },
                )
            }
        };
        // The tree is hashed once: the frontier of the checkpoint's prefix
        // checks it, the leaves after it are pushed on. Opened from the
        // index, the frontier saved with the checkpoint stands for it.
        let mut frontier = merkle::Frontier::default();
        let mut covered = None;
        let cp_path = dir.join("checkpoint");
        match std::fs::read_to_string(&cp_path) {
            Ok(note) => {
                let mut verified = Err(AuditError::Corrupt("no key to verify it with".into()));
                for key in keys {
                    verified = Checkpoint::verify(&note, &origin, key)
                        .map_err(|e| AuditError::Corrupt(format!("last checkpoint: {e}")));
                    if verified.is_ok() {
                        break;
                    }
                }
                let cp = verified?;
                let prefix = usize::try_from(cp.size)
                    .ok()
                    .filter(|&size| size <= leaves.len());
                if let Some(size) = prefix {
                    let saved = std::fs::read(dir.join(FRONTIER_FILE))
                        .ok()
                        .and_then(|b| merkle::Frontier::from_bytes(&b))
                        .filter(|f| !checked && f.size() == cp.size && f.root() == cp.root);
                    frontier = saved.unwrap_or_else(|| merkle::Frontier::of(&leaves[..size]));
                }
                if prefix.is_none() || frontier.root() != cp.root {
                    return Err(AuditError::Corrupt(
                        "the log does not match its last signed checkpoint".into(),
                    ));
                }
                covered = Some(cp);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && leaves.is_empty() => {}
            Err(e) => {
                return Err(AuditError::Corrupt(format!(
                    "the log holds {} entries but its last signed checkpoint cannot be read: {e}",
                    leaves.len()
                )));
            }
        }
        for leaf in &leaves[frontier.size() as usize..] {
            frontier.push(*leaf);
        }
        let magic_len = FILE_MAGIC.len() as u64;
        let len = if valid_len < magic_len {
            // A new file, or one whose first write was torn: it holds no entry.
            file.set_len(0).map_err(io_err(&path))?;
            file.write_all(FILE_MAGIC).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
            magic_len
        } else if valid_len < file_len {
            // Only a torn last batch is dropped: its fdatasync never
            // returned, so none of its entries was acknowledged.
            tracing::warn!(
                path = %path.display(),
                dropped = file_len - valid_len,
                "dropping an unacknowledged torn tail of the audit log"
            );
            file.set_len(valid_len).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
            valid_len
        } else {
            file_len
        };
        // The tiles: read whole, hashed from the leaves; opened from the
        // index, the tiles saved with it (checked in the background), and
        // those it lacks hashed from the leaves.
        let width = 1usize << merkle::TILE_HEIGHT;
        let complete = leaves.len() / width;
        let tiles = if checked {
            Tiled::tiles_of(&leaves).0
        } else {
            let mut tiles = index::read_tiles(dir).unwrap_or_default();
            tiles.truncate(complete);
            for t in tiles.len()..complete {
                tiles.push(merkle::root(&leaves[t * width..(t + 1) * width]));
            }
            tiles
        };
        let last = leaves[complete * width..].to_vec();
        let tree = Tiled::from_tiles(&tiles, last.clone())
            .ok_or_else(|| AuditError::Corrupt("the log's tiles do not fit it".into()))?;
        // Saved tiles that do not give the root of the leaves (whose
        // frontier the signed checkpoint vouches for) are made again from
        // the leaves, and saved again below: a damaged `tiles.idx` costs a
        // slower start, never a refused log.
        let in_memory = |t: u64| -> Result<Vec<Hash>, std::convert::Infallible> {
            let t = t as usize;
            Ok(leaves[t * width..(t + 1) * width].to_vec())
        };
        let (tree, tiles) = if tree.root_at(leaves.len() as u64, in_memory).ok()
            == Some(frontier.root())
        {
            (tree, tiles)
        } else {
            tracing::warn!(path = %dir.display(), "the saved tiles do not fit the log: making them again");
            let tiles = Tiled::tiles_of(&leaves).0;
            let tree = Tiled::from_tiles(&tiles, last)
                .ok_or_else(|| AuditError::Corrupt("the log's tiles do not fit it".into()))?;
            (tree, tiles)
        };
        // An index that fits is kept and completed, any other made again.
        let leaf_index = if kept > 0 {
            index::LeafIndex::open(dir, kept, &tiles).and_then(|mut index| {
                let rest = offsets[kept..].iter().copied();
                index.append(rest.zip(leaves[kept..].iter().copied()))?;
                Ok(index)
            })
        } else {
            index::LeafIndex::rewrite(dir, &offsets, &leaves, &tiles)
        }
        .map_err(io_err(dir))?;
        let records = Arc::new(index::Records::open(dir).map_err(io_err(dir))?);
        let integrity = Arc::new(std::sync::Mutex::new(if checked {
            Integrity::Verified {
                entries: leaves.len() as u64,
            }
        } else {
            Integrity::Checking
        }));
        // The background check covers every entry the log opened with: the
        // index holds all of them by now.
        let known = leaves.len();
        drop((offsets, leaves));
        let state = Arc::new(RwLock::new(LogState {
            tree,
            frontier,
            failed: false,
        }));
        if !checked {
            let (state, integrity, path) = (state.clone(), integrity.clone(), path.clone());
            let records = records.clone();
            std::thread::Builder::new()
                .name("audit-check".into())
                .spawn(move || {
                    check_in_background(&path, len, known, covered, &state, &records, &integrity)
                })
                .map_err(io_err(dir))?;
        }
        let (jobs, rx) = mpsc::channel(MAX_QUEUED);
        let writer_state = state.clone();
        let writer_path = path.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer(file, len, writer_path, rx, writer_state, leaf_index))
            .map_err(io_err(&path))?;
        Ok(Self {
            path,
            origin,
            state,
            records,
            jobs,
            checkpointing: std::sync::Mutex::new(Default::default()),
            integrity,
            append_latency: crate::metrics::LatencyHistogram::default(),
        })
    }

    /// Whether the log takes appends: not once its check failed, nor once
    /// a write of it or of its index failed.
    pub fn accepts_appends(&self) -> bool {
        !self.read_state().failed && !matches!(self.integrity(), Integrity::Failed(_))
    }

    /// Where the check of the log against its index and its last
    /// checkpoint stands (a log opened from its index is checked in the
    /// background; one that fails it refuses every append).
    pub fn integrity(&self) -> Integrity {
        match self.integrity.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// How many entries the leaf index of the log in `dir` records (the log
    /// itself may hold a few more), without opening the log.
    pub fn count_entries(dir: &Path) -> u64 {
        index::read(dir).offsets.len() as u64
    }

    /// The log file (`audit.log` in the log's folder).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log's origin (checkpoint key name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Appends an event and returns its leaf index once it is durable; waits
    /// while the writer's queue is full.
    pub async fn append(&self, time: i64, event: AuditEvent) -> Result<u64, AuditError> {
        let data = AuditEntry { time, event }.to_bytes();
        if data.len() > MAX_EVENT {
            return Err(AuditError::TooLarge(data.len()));
        }
        let started = std::time::Instant::now();
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job { data, reply })
            .await
            .map_err(|_| AuditError::Unavailable)?;
        let appended = rx.await.map_err(|_| AuditError::Unavailable)?;
        if appended.is_ok() {
            self.append_latency.observe(started.elapsed());
        }
        appended
    }

    /// How long appends take (for the metrics).
    pub fn append_latency(&self) -> crate::metrics::LatencyHistogram {
        self.append_latency.clone()
    }

    /// The bytes of the log file (0 if it cannot be read).
    pub fn bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// The number of durable leaves.
    pub fn size(&self) -> u64 {
        self.read_state().tree.size()
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, LogState> {
        match self.state.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Entries `[from, from + limit)` with their indices.
    pub fn entries(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        self.entries_within(from, limit, usize::MAX)
    }

    /// Entries from `from`, at most `limit` of them and, past the first, at
    /// most `max_bytes` of JSON in all.
    pub fn entries_within(
        &self,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        let size = self.size();
        let start = from.min(size);
        let end = start
            .saturating_add(u64::try_from(limit).unwrap_or(u64::MAX))
            .min(size);
        let offsets = self
            .records
            .read(start, end)
            .map_err(io_err(self.records.path()))?;
        let mut file = File::open(&self.path).map_err(io_err(&self.path))?;
        let mut out = Vec::with_capacity(offsets.len());
        let mut bytes = 0usize;
        for (i, (off, _)) in offsets.into_iter().enumerate() {
            file.seek(SeekFrom::Start(off))
                .map_err(io_err(&self.path))?;
            let mut len = [0u8; 4];
            file.read_exact(&mut len).map_err(io_err(&self.path))?;
            let n = u32::from_be_bytes(len) as usize;
            if !out.is_empty() && bytes.saturating_add(n) > max_bytes {
                break;
            }
            let mut data = vec![0u8; n];
            file.read_exact(&mut data).map_err(io_err(&self.path))?;
            bytes += n;
            out.push((from + i as u64, data));
        }
        Ok(out)
    }

    /// The checkpoints signed since the log was opened, the last
    /// [`RECENT_CHECKPOINTS`] of them, newest last.
    pub fn recent_checkpoints(&self) -> Vec<String> {
        match self.checkpointing.lock() {
            Ok(g) => g.iter().cloned().collect(),
            Err(p) => p.into_inner().iter().cloned().collect(),
        }
    }

    /// The last checkpoint signed and persisted, as a signed note.
    pub fn latest_checkpoint(&self) -> Result<String, AuditError> {
        let path = self
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join("checkpoint");
        std::fs::read_to_string(&path).map_err(io_err(&path))
    }

    /// What a proof over the tree needs, under the lock: the tree above
    /// its tiles, and the leaves of at most two tiles read from the index
    /// and checked against their hashes (`O(log n)` hashes, no copy).
    /// Tiles read for earlier proofs of the same answer are taken from
    /// `read` (a complete tile never changes), which keeps at most
    /// [`TILES_KEPT`] of them.
    fn over_tree<T>(
        &self,
        read: &mut HashMap<u64, Vec<Hash>>,
        what: impl FnOnce(
            &Tiled,
            &mut dyn FnMut(u64) -> std::io::Result<Vec<Hash>>,
        ) -> Result<T, merkle::TileError<std::io::Error>>,
        range: impl FnOnce(u64) -> String,
    ) -> Result<T, AuditError> {
        let st = self.read_state();
        let mut fetch = |t: u64| {
            if let Some(leaves) = read.get(&t) {
                return Ok(leaves.clone());
            }
            let leaves = self.records.tile(t)?;
            if read.len() >= TILES_KEPT {
                read.clear();
            }
            read.insert(t, leaves.clone());
            Ok(leaves)
        };
        what(&st.tree, &mut fetch).map_err(|e| match e {
            merkle::TileError::Range => AuditError::Range(range(st.tree.size())),
            merkle::TileError::Mismatch { tile } => AuditError::Corrupt(format!(
                "the leaf index does not match tile {tile} of the log"
            )),
            merkle::TileError::Read(source) => AuditError::Io {
                path: self.records.path().to_owned(),
                source,
            },
        })
    }

    /// An inclusion proof of leaf `index` in the tree of the first `size`
    /// leaves (RFC 6962 §2.1.1).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        self.inclusion_proof_reading(index, size, &mut HashMap::new())
    }

    fn inclusion_proof_reading(
        &self,
        index: u64,
        size: u64,
        read: &mut HashMap<u64, Vec<Hash>>,
    ) -> Result<Vec<Hash>, AuditError> {
        self.over_tree(
            read,
            |tree, fetch| tree.inclusion_proof(index, size, fetch),
            |have| format!("no leaf {index} in a tree of {size} (the log holds {have})"),
        )
    }

    /// The inclusion proofs of leaves `indices` in the tree of `size`
    /// leaves: each under the lock on its own (appends go on between them),
    /// the tiles they share read once.
    pub fn inclusion_proofs(
        &self,
        indices: &[u64],
        size: u64,
    ) -> Result<Vec<Vec<Hash>>, AuditError> {
        let mut read = HashMap::new();
        indices
            .iter()
            .map(|&i| self.inclusion_proof_reading(i, size, &mut read))
            .collect()
    }

    /// A consistency proof from the tree of the first `old` leaves to that
    /// of the first `new` (RFC 6962 §2.1.2); empty when they are equal.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, AuditError> {
        self.over_tree(
            &mut HashMap::new(),
            |tree, fetch| tree.consistency_proof(old, new, fetch),
            |have| format!("no consistency proof from {old} to {new} (the log holds {have})"),
        )
    }

    /// The root of the tree of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, AuditError> {
        self.over_tree(
            &mut HashMap::new(),
            |tree, fetch| tree.root_at(size, fetch),
            |have| format!("no tree of {size} (the log holds {have})"),
        )
    }

    /// Signs a checkpoint if the log grew since the last one; returns whether it did.
    pub fn checkpoint_if_grown(&self, key: &NodeKey) -> Result<bool, AuditError> {
        let signed = Checkpoint::parse_body(&self.latest_checkpoint()?).map(|c| c.size);
        if signed.is_some_and(|n| n >= self.size()) {
            return Ok(false);
        }
        self.checkpoint(key).map(|_| true)
    }

    /// Signs a checkpoint of the current tree, after persisting it as the last signed one.
    pub fn checkpoint(&self, key: &NodeKey) -> Result<String, AuditError> {
        let mut _one_at_a_time = match self.checkpointing.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (cp, frontier) = {
            let st = self.read_state();
            let cp = Checkpoint {
                origin: self.origin.clone(),
                size: st.frontier.size(),
                root: st.frontier.root(),
            };
            (cp, st.frontier.clone())
        };
        let note = cp.sign(key);
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let saved = dir.join("checkpoint.frontier.tmp");
        std::fs::write(&saved, frontier.to_bytes())
            .and_then(|()| std::fs::rename(&saved, dir.join(FRONTIER_FILE)))
            .map_err(io_err(&saved))?;
        _one_at_a_time.push_back(note.clone());
        while _one_at_a_time.len() > RECENT_CHECKPOINTS {
            _one_at_a_time.pop_front();
        }
        let tmp = dir.join("checkpoint.tmp");
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(note.as_bytes()).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, dir.join("checkpoint")).map_err(io_err(&tmp))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
        Ok(note)
    }
}

fn writer(
    mut file: File,
    mut len: u64,
    path: PathBuf,
    mut rx: mpsc::Receiver<Job>,
    state: Arc<RwLock<LogState>>,
    mut leaf_index: index::LeafIndex,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let failed = match state.read() {
            Ok(g) => g.failed,
            Err(p) => p.into_inner().failed,
        };
        if failed {
            for job in batch {
                let _ = job.reply.send(Err(AuditError::Unavailable));
            }
            continue;
        }
        let datas: Vec<&[u8]> = batch.iter().map(|j| j.data.as_slice()).collect();
        let buf = encode_batch(&datas);
        let mut offsets = Vec::with_capacity(batch.len());
        let mut at = len + BATCH_HEADER as u64;
        for job in &batch {
            offsets.push(at);
            at += 4 + job.data.len() as u64;
        }
        let written = file.write_all(&buf).and_then(|()| file.sync_data());
        match written {
            Ok(()) => {
                len += buf.len() as u64;
                let leaves: Vec<Hash> = batch.iter().map(|j| merkle::leaf_hash(&j.data)).collect();
                // Indexed before the tree grows and before the replies: a
                // page or a proof of any leaf the tree holds finds its
                // record, and a log reopened right after an answer (a
                // restart in the same process) finds it too, with no writer
                // of the closed log still appending behind it.
                let indexed = leaf_index.append(offsets.into_iter().zip(leaves.iter().copied()));
                let mut st = match state.write() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                let first_index = st.tree.size();
                let mut tiles = Vec::new();
                for leaf in &leaves {
                    tiles.extend(st.tree.push(*leaf));
                    st.frontier.push(*leaf);
                }
                let kept = indexed.and_then(|()| leaf_index.append_tiles(&tiles));
                if let Err(e) = &kept {
                    // The entries are durable and answered; what follows is
                    // refused until a restart makes the index again.
                    tracing::error!(path = %path.display(), error = %e, "audit leaf index write failed; refusing further appends");
                    st.failed = true;
                }
                drop(st);
                for (i, job) in batch.into_iter().enumerate() {
                    let _ = job.reply.send(Ok(first_index + i as u64));
                }
                continue;
            }
            Err(e) => {
                let mut st = match state.write() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                tracing::error!(path = %path.display(), error = %e, "audit log write failed; refusing further appends");
                st.failed = true;
                let _ = file.set_len(len);
                for job in batch {
                    let _ = job.reply.send(Err(AuditError::Unavailable));
                }
            }
        }
    }
}

/// Verifies a whole log as an auditor would: every entry decodes, and the
/// signed checkpoint covers exactly their Merkle root. Nodes check their own
/// log at start with the same rule ([`AuditLog::open`]), on a prefix.
pub fn verify_log(
    entries: &[Vec<u8>],
    checkpoint_note: &str,
    origin: &str,
    key: &PublicKey,
) -> Result<Checkpoint, AuditError> {
    let cp = Checkpoint::verify(checkpoint_note, origin, key)
        .map_err(|e| AuditError::Verify(e.to_string()))?;
    if cp.size != entries.len() as u64 {
        return Err(AuditError::Verify(format!(
            "checkpoint covers {} leaves, {} given",
            cp.size,
            entries.len()
        )));
    }
    let leaves = decode_and_hash(
        entries,
        |e: &Vec<u8>| Some(e.as_slice()),
        |e| merkle::leaf_hash(e),
    )?;
    if !covers(&leaves, &cp) {
        return Err(AuditError::Verify(
            "root does not match the checkpoint".into(),
        ));
    }
    Ok(cp)
}

/// Verifies an exported log ([`bundle::Leaf`]s, some perhaps withheld)
/// against a checkpoint: its size, every entry shown decodes, and the root of
/// every leaf hash is the checkpoint's. Returns the leaf hashes. This is the
/// code `maillon audit verify` runs, on every core.
pub fn verify_leaves(leaves: &[bundle::Leaf], cp: &Checkpoint) -> Result<Vec<Hash>, AuditError> {
    if cp.size != leaves.len() as u64 {
        return Err(AuditError::Verify(format!(
            "checkpoint covers {} leaves, {} given",
            cp.size,
            leaves.len()
        )));
    }
    let hashes = decode_and_hash(
        leaves,
        |l: &bundle::Leaf| match l {
            bundle::Leaf::Entry(e) => Some(e.as_slice()),
            bundle::Leaf::Withheld(_) => None,
        },
        bundle::Leaf::hash,
    )?;
    if !covers(&hashes, cp) {
        return Err(AuditError::Verify(
            "root does not match the checkpoint".into(),
        ));
    }
    Ok(hashes)
}

/// Checks that every entry shown decodes and hashes every leaf, on every
/// core: the leaves are cut in one run per core, each run on its own thread.
fn decode_and_hash<L: Sync>(
    leaves: &[L],
    shown: impl Fn(&L) -> Option<&[u8]> + Sync,
    hash: impl Fn(&L) -> Hash + Sync,
) -> Result<Vec<Hash>, AuditError> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let run = leaves.len().div_ceil(cores.max(1)).max(1024);
    let (shown, hash) = (&shown, &hash);
    let chunk = move |start: usize, part: &[L]| -> Result<Vec<Hash>, AuditError> {
        part.iter()
            .enumerate()
            .map(|(i, l)| {
                if let Some(e) = shown(l) {
                    AuditEntry::from_bytes(e)
                        .map_err(|err| AuditError::Verify(format!("leaf {}: {err}", start + i)))?;
                }
                Ok(hash(l))
            })
            .collect()
    };
    let parts: Vec<Result<Vec<Hash>, AuditError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = leaves
            .chunks(run)
            .enumerate()
            .map(|(n, part)| scope.spawn(move || chunk(n * run, part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(AuditError::Verify("a verifying thread panicked".into()))
                })
            })
            .collect()
    });
    let mut out = Vec::with_capacity(leaves.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> AuditEvent {
        AuditEvent::RosterAdopted {
            version: i,
            hash: "00".into(),
        }
    }

    #[tokio::test]
    async fn appends_are_durable_ordered_and_verifiable_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = NodeKey::generate();
        let origin = "gip/ccas-rodez".to_string();
        let note = {
            let log =
                Arc::new(AuditLog::open(dir.path(), origin.clone(), &key.public()).expect("open"));
            let mut tasks = Vec::new();
            for i in 0..200 {
                let log = log.clone();
                tasks.push(tokio::spawn(
                    async move { log.append(i, event(i as u64)).await },
                ));
            }
            let mut indices = Vec::new();
            for t in tasks {
                indices.push(t.await.expect("join").expect("append"));
            }
            indices.sort_unstable();
            assert_eq!(indices, (0..200).collect::<Vec<u64>>());
            log.checkpoint(&key).expect("checkpoint")
        };
        let log = AuditLog::open(dir.path(), origin.clone(), &key.public()).expect("reopen");
        assert_eq!(log.size(), 200);
        let entries: Vec<Vec<u8>> = log
            .entries(0, 1000)
            .expect("entries")
            .into_iter()
            .map(|e| e.1)
            .collect();
        let cp = verify_log(&entries, &note, &origin, &key.public()).expect("verifies");
        assert_eq!(cp.size, 200);
        let mut tampered = entries.clone();
        tampered[3] = AuditEntry {
            time: 0,
            event: event(99),
        }
        .to_bytes();
        assert!(verify_log(&tampered, &note, &origin, &key.public()).is_err());
    }

    /// Writes entries one per batch, signs a checkpoint after `signed` of them.
    async fn log_with(dir: &Path, key: &NodeKey, n: u64, signed: u64) -> Vec<u8> {
        let log = AuditLog::open(dir, "maillon/cd12".into(), &key.public()).expect("open");
        for i in 0..n {
            log.append(i as i64, event(i)).await.expect("append");
            if i + 1 == signed {
                log.checkpoint(key).expect("checkpoint");
            }
        }
        drop(log);
        std::fs::read(dir.join("audit.log")).expect("read")
    }

    fn reopen(dir: &Path, key: &NodeKey) -> Result<AuditLog, AuditError> {
        AuditLog::open(dir, "maillon/cd12".into(), &key.public())
    }

    fn reopen_from_index(dir: &Path, key: &NodeKey) -> Result<AuditLog, AuditError> {
        AuditLog::open_checking(dir, "maillon/cd12".into(), &[key.public()], 1)
    }

    /// The log's check once the background is done with it.
    async fn checked(log: &AuditLog) -> Integrity {
        for _ in 0..500 {
            match log.integrity() {
                Integrity::Checking => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                done => return done,
            }
        }
        panic!("the background check did not end");
    }

    #[tokio::test]
    async fn a_long_log_opens_from_its_index_and_is_checked_in_the_background() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = NodeKey::generate();
        let bytes = log_with(dir.path(), &key, 40, 30).await;
        let whole = reopen(dir.path(), &key).expect("read whole");
        assert_eq!(whole.integrity(), Integrity::Verified { entries: 40 });
        let root = whole.root_at(40).expect("root");
        drop(whole);

        let log = reopen_from_index(dir.path(), &key).expect("from the index");
        assert_eq!(log.size(), 40);
        assert_eq!(log.root_at(40).expect("root"), root);
        assert_eq!(checked(&log).await, Integrity::Verified { entries: 40 });
        assert_eq!(log.append(0, event(40)).await.expect("append"), 40);
        drop(log);

        // The index lost its last records (the node died before writing
        // them): the entries after it are read from the log, and indexed.
        let index = dir.path().join(index::INDEX_FILE);
        let full = std::fs::metadata(&index).expect("index").len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&index)
            .and_then(|f| f.set_len(full - 3 * 40 - 7))
            .expect("cut");
        let log = reopen_from_index(dir.path(), &key).expect("from a short index");
        assert_eq!(log.size(), 41);
        assert_eq!(checked(&log).await, Integrity::Verified { entries: 41 });
        drop(log);
        assert_eq!(std::fs::metadata(&index).expect("index").len(), full);
        // Read whole (a short log), a short index that fits is completed.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&index)
            .and_then(|f| f.set_len(full - 2 * 40))
            .expect("cut");
        drop(reopen(dir.path(), &key).expect("read whole"));
        assert_eq!(std::fs::metadata(&index).expect("index").len(), full);

        // An index that does not fit the log (garbage, or gone): the log is
        // read whole, and the index made again.
        for damage in [Some(b"garbage".to_vec()), None] {
            match &damage {
                Some(b) => std::fs::write(&index, b).expect("write"),
                None => std::fs::remove_file(&index).expect("rm"),
            }
            let log = reopen_from_index(dir.path(), &key).expect("read whole");
            assert_eq!(log.integrity(), Integrity::Verified { entries: 41 });
            drop(log);
            assert_eq!(std::fs::metadata(&index).expect("index").len(), full);
        }
        // A saved frontier that is not the checkpoint's is hashed again.
        std::fs::write(dir.path().join(FRONTIER_FILE), [0u8; 8 + 32]).expect("write");
        let log = reopen_from_index(dir.path(), &key).expect("frontier hashed again");
        assert_eq!(log.root_at(40).expect("root"), root);
        drop(log);
        let _ = bytes;
    }

    #[tokio::test]
    async fn a_log_that_does_not_match_its_index_refuses_appends_once_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = NodeKey::generate();
        let bytes = log_with(dir.path(), &key, 20, 20).await;
        // Let the writer index the last batch, then take the index as it is.
        reopen(dir.path(), &key).expect("whole");
        let index = std::fs::read(dir.path().join(index::INDEX_FILE)).expect("index");

        // A leaf hash in the index changed; then an entry of the log.
        let mut wrong_index = index.clone();
        let at = index.len() - 40 * 5 + 8 + 3;
        wrong_index[at] ^= 0x01;
        let mut wrong_log = bytes.clone();
        let middle = bytes.len() / 2;
        wrong_log[middle] ^= 0x01;
        for (log_bytes, index_bytes) in [(&bytes, &wrong_index), (&wrong_log, &index)] {
            std::fs::write(dir.path().join("audit.log"), log_bytes).expect("write");
            std::fs::write(dir.path().join(index::INDEX_FILE), index_bytes).expect("write");
            let log = reopen_from_index(dir.path(), &key).expect("opens from the index");
            let Integrity::Failed(why) = checked(&log).await else {
                panic!("the check must fail");
            };
            assert!(!why.is_empty());
            assert!(!log.accepts_appends());
            assert!(matches!(
                log.append(0, event(99)).await,
                Err(AuditError::Unavailable)
            ));
            drop(log);
            // Read whole, it is refused at open.
            assert!(reopen(dir.path(), &key).is_err() || log_bytes == &bytes);
        }
    }

    #[tokio::test]
    async fn a_damaged_tile_is_made_again_and_an_index_that_does_not_fit_is_read_around() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = NodeKey::generate();
        let n = 2 * (1u64 << merkle::TILE_HEIGHT) + 30;
        let log = reopen(dir.path(), &key).expect("open");
        let appends = (0..n).map(|i| log.append(i as i64, event(i)));
        for r in futures_util::future::join_all(appends).await {
            r.expect("append");
        }
        log.checkpoint(&key).expect("checkpoint");
        let root = log.root_at(n).expect("root");
        let proof = log.inclusion_proof(3, n).expect("proof");
        drop(log);
        let tiles = std::fs::read(dir.path().join(index::TILES_FILE)).expect("tiles");
        assert_eq!(tiles.len(), 16 + 2 * 32, "two complete tiles are saved");

        // A saved tile hash changed, or the file cut: opened from the
        // index, the tiles do not give the leaves' root, so they are made
        // again from the leaves and saved; proofs and appends go on.
        let mut wrong = tiles.clone();
        wrong[16 + 32 + 5] ^= 0x01;
        for damaged in [wrong, tiles[..16 + 32 + 7].to_vec(), b"nonsense".to_vec()] {
            std::fs::write(dir.path().join(index::TILES_FILE), &damaged).expect("write");
            let log = reopen_from_index(dir.path(), &key).expect("opens from the index");
            assert_eq!(log.root_at(n).expect("root"), root);
            assert_eq!(log.inclusion_proof(3, n).expect("proof"), proof);
            assert!(log.inclusion_proof(300, n).is_ok());
            assert_eq!(checked(&log).await, Integrity::Verified { entries: n });
            assert!(log.accepts_appends());
            drop(log);
            assert_eq!(
                std::fs::read(dir.path().join(index::TILES_FILE)).expect("tiles"),
                tiles,
                "saved again"
            );
        }

        // The index's last record points inside an entry: its tail does
        // not decode, the log is read whole and opens with every entry.
        let index = std::fs::read(dir.path().join(index::INDEX_FILE)).expect("index");
        let mut off_by_one = index.clone();
        let last_offset = off_by_one.len() - 40 + 7;
        off_by_one[last_offset] ^= 0x01;
        std::fs::write(dir.path().join(index::INDEX_FILE), &off_by_one).expect("write");
        let log = reopen_from_index(dir.path(), &key).expect("read around the index");
        assert_eq!(log.size(), n);
        assert_eq!(log.integrity(), Integrity::Verified { entries: n });
        assert_eq!(log.root_at(n).expect("root"), root);
        assert_eq!(log.inclusion_proof(3, n).expect("proof"), proof);
        log.append(n as i64, event(n)).await.expect("appends go on");
        drop(log);
        let index_after = std::fs::read(dir.path().join(index::INDEX_FILE)).expect("index");
        assert_eq!(
            &index_after[..index.len()],
            &index[..],
            "the index is made again"
        );
    }

    #[tokio::test]
    async fn a_torn_last_batch_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = NodeKey::generate();
        let bytes = log_with(dir.path(), &key, 3, 2).await;
        // The last batch cut short, or its payload half written.
        for torn in [
            bytes[..bytes.len() - 3].to_vec(),
            [bytes.as_slice(), &[0, 0, 0, 50, b'{']].concat(),
            [bytes.as_slice(), &[0; 64]].concat(),
        ] {
            std::fs::write(dir.path().join("audit.log"), &torn).expect("write");
            let log = reopen(dir.path(), &key).expect("a torn tail is dropped");
            assert!(log.size() == 2 || log.size() == 3, "{}", log.size());
        }
        let mut last = bytes.clone();
        let end = last.len() - 2;
        last[end] ^= 0x40;
        std::fs::write(dir.path().join("audit.log"), &last).expect("write");
        assert_eq!(reopen(dir.path(), &key).expect("torn").size(), 2);
    }

    #[tokio::test]
    async fn damage_before_the_last_batch_is_an_error_not_a_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = NodeKey::generate();
        let bytes = log_with(dir.path(), &key, 3, 1).await;
        // A byte of the second batch's payload, or of its header.
        let second = FILE_MAGIC.len()
            + encode_batch(&[&AuditEntry {
                time: 0,
                event: event(0),
            }
            .to_bytes()])
            .len();
        for at in [second + BATCH_HEADER + 6, second + 2] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            std::fs::write(dir.path().join("audit.log"), &damaged).expect("write");
            assert!(
                matches!(reopen(dir.path(), &key), Err(AuditError::Corrupt(_))),
                "damage at {at} is refused"
            );
            assert_eq!(
                std::fs::read(dir.path().join("audit.log")).expect("read"),
                damaged,
                "and nothing is truncated"
            );
        }
    }

    #[tokio::test]
    async fn a_log_that_its_checkpoint_does_not_cover_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = NodeKey::generate();
        let bytes = log_with(dir.path(), &key, 2, 2).await;
        // The last batch damaged while the checkpoint covers it.
        let mut damaged = bytes.clone();
        let end = damaged.len() - 2;
        damaged[end] ^= 0x01;
        std::fs::write(dir.path().join("audit.log"), &damaged).expect("write");
        assert!(matches!(
            reopen(dir.path(), &key),
            Err(AuditError::Corrupt(_))
        ));
        std::fs::write(dir.path().join("audit.log"), &bytes).expect("write");
        reopen(dir.path(), &key).expect("intact again");
        // Checkpoint missing, or unreadable, while the log holds entries: fail closed.
        let cp = dir.path().join("checkpoint");
        std::fs::write(&cp, "garbage\n").expect("write");
        assert!(matches!(
            reopen(dir.path(), &key),
            Err(AuditError::Corrupt(_))
        ));
        std::fs::remove_file(&cp).expect("rm");
        assert!(matches!(
            reopen(dir.path(), &key),
            Err(AuditError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn pages_stop_at_their_byte_budget_but_hold_at_least_one_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = NodeKey::generate();
        log_with(dir.path(), &key, 10, 10).await;
        let log = reopen(dir.path(), &key).expect("open");
        let one = log.entries(0, 1).expect("one")[0].1.len();
        assert_eq!(log.entries_within(0, 10, 1).expect("page").len(), 1);
        assert_eq!(log.entries_within(0, 10, 3 * one).expect("page").len(), 3);
        assert_eq!(
            log.entries_within(8, 10, usize::MAX).expect("page").len(),
            2
        );
    }

    #[test]
    fn every_listed_event_kind_is_one_the_log_writes() {
        for kind in super::EVENT_KINDS {
            let err =
                serde_json::from_str::<AuditEntry>(&format!(r#"{{"time":0,"event":"{kind}"}}"#))
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
            assert!(!err.contains("unknown variant"), "{kind}: {err}");
        }
        assert!(
            serde_json::from_str::<AuditEntry>(r#"{"time":0,"event":"no_such_kind"}"#)
                .is_err_and(|e| e.to_string().contains("unknown variant"))
        );
    }

    #[test]
    fn an_orientation_logged_in_clear_by_an_earlier_version_still_reads() {
        let old = r#"{"event":"orientation_received","orientation":"ORI-0000000000000000000000000A","dossier":"DSU-0000000000000000000000000A","from":"ccas-rodez","service":"aide-logement","message":"e30=","signature":"AAAA"}"#;
        let event: AuditEvent = serde_json::from_str(old).expect("an entry of an earlier version");
        let AuditEvent::OrientationReceived {
            sealed,
            message,
            signature,
            ..
        } = &event
        else {
            panic!("{event:?}");
        };
        assert!(sealed.is_empty());
        assert_eq!(
            (message.as_deref(), signature.as_deref()),
            (Some("e30="), Some("AAAA"))
        );
        let again = serde_json::to_string(&event).expect("json");
        assert!(!again.contains("sealed"), "{again}");
        assert_eq!(serde_json::from_str::<AuditEvent>(&again).ok(), Some(event));
    }
}
