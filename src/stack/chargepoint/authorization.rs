//! Authorization: a presented card, Authorize.req, the authorization cache (ClearCache), the
//! local authorization list (SendLocalList, GetLocalListVersion), and the rules that decide
//! without the CSMS (LocalPreAuthorize, LocalAuthorizeOffline, AllowOfflineTxForUnknownId,
//! FreeCharging). An accepted idTag is handed to [`super::transactions`].

use std::path::Path;

use super::actor::ChargePoint;
use super::outbox::Purpose;
use crate::stack::auth::{self, AuthCache, LocalDecision, LocalList, TagInfo};
use crate::stack::config::BoolKey;
use crate::stack::local_list::{self, ListLimits, LocalAuthList};
use crate::stack::messages::{self, ChargingProfile, IdToken};

/// An Authorize.req waiting for its answer.
#[derive(Debug)]
pub(super) struct Authorizing {
    pub id_tag: String,
    /// The chargingProfile of a RemoteStartTransaction, for the transaction it starts.
    pub charging_profile: Option<ChargingProfile>,
}

pub(super) struct Authorization {
    pub authorizing: Option<Authorizing>,
    cache: AuthCache,
    local_list: LocalAuthList,
}

impl Authorization {
    pub fn open(dir: &Path) -> Authorization {
        Authorization {
            authorizing: None,
            cache: AuthCache::open(dir),
            local_list: LocalAuthList::open_or_empty(dir, ListLimits::default()),
        }
    }
}

impl ChargePoint {
    fn local_list(&self) -> Option<&dyn LocalList> {
        if self.config.bool(BoolKey::LOCAL_AUTH_LIST_ENABLED) {
            Some(&self.auth.local_list as &dyn LocalList)
        } else {
            None
        }
    }

    fn cache(&self) -> Option<&AuthCache> {
        self.config
            .bool(BoolKey::AUTHORIZATION_CACHE_ENABLED)
            .then_some(&self.auth.cache)
    }

    /// Remembers what the CSMS said of `id_tag` (AuthorizationCacheEnabled).
    pub fn learn(&mut self, id_tag: &str, info: &TagInfo) {
        if !self.config.bool(BoolKey::AUTHORIZATION_CACHE_ENABLED) {
            return;
        }
        // Tags in the local list are not cached (OCPP 1.6 §3.5.1 keeps the two apart).
        if self.auth.local_list.lookup(id_tag).is_some() {
            return;
        }
        let result = self.auth.cache.update(id_tag, info.clone());
        self.stored("the authorization cache", result);
    }

    pub fn on_card(&mut self, id_tag: String) {
        if let Some(tx) = &self.transactions.active {
            let same = tx.id_tag == id_tag;
            let parent_match =
                !same && tx.parent_id_tag.is_some() && self.parent_of(&id_tag) == tx.parent_id_tag;
            if same || parent_match {
                self.log
                    .info("tx", format!("card {id_tag} ends the session"));
                self.stop_transaction(messages::Reason::Local, Some(id_tag));
            } else {
                self.log.info(
                    "auth",
                    format!("card {id_tag} ignored: another session is running"),
                );
            }
            return;
        }
        if self.config.bool(BoolKey::FREE_CHARGING) {
            self.log
                .info("auth", "free charging is on: no card needed, card ignored");
            return;
        }
        if self.auth.authorizing.is_some() {
            self.log.info(
                "auth",
                format!("card {id_tag} ignored: authorization in progress"),
            );
            return;
        }
        if !self.connector_usable() {
            self.log.warn(
                "auth",
                format!("card {id_tag} ignored: the connector is not available"),
            );
            return;
        }
        self.authorize(id_tag, None);
    }

    fn parent_of(&self, id_tag: &str) -> Option<String> {
        match auth::lookup_local(id_tag, Some(&self.auth.local_list), Some(&self.auth.cache)) {
            LocalDecision::Known { info, .. } => info.parent_id_tag,
            LocalDecision::Unknown => None,
        }
    }

    /// Decides locally or asks the CSMS, per LocalPreAuthorize / LocalAuthorizeOffline /
    /// AllowOfflineTxForUnknownId.
    pub fn authorize(&mut self, id_tag: String, charging_profile: Option<ChargingProfile>) {
        let now = self.now();
        let local = auth::lookup_local(&id_tag, self.local_list(), self.cache());
        if self.link.accepted() {
            if let LocalDecision::Known { source: from, info } = &local
                && self.config.bool(BoolKey::LOCAL_PRE_AUTHORIZE)
                && info.is_valid_at(now)
            {
                self.log.info(
                    "auth",
                    format!("{id_tag} accepted from the {from} (pre-authorize)"),
                );
                let info = info.clone();
                self.grant(id_tag, info, charging_profile);
                return;
            }
            let Ok(token) = IdToken::new(id_tag.as_str()) else {
                self.log.warn(
                    "auth",
                    format!("{id_tag} refused: an idTag has at most 20 characters"),
                );
                return;
            };
            self.auth.authorizing = Some(Authorizing {
                id_tag: id_tag.clone(),
                charging_profile,
            });
            self.outbox.push(
                messages::AuthorizeRequest { id_tag: token },
                Purpose::Authorize(id_tag),
            );
            return;
        }
        self.decide_offline(id_tag, local, charging_profile);
    }

    fn decide_offline(
        &mut self,
        id_tag: String,
        local: LocalDecision,
        profile: Option<ChargingProfile>,
    ) {
        let now = self.now();
        match local {
            LocalDecision::Known { source, info } => {
                if info.is_valid_at(now) && self.config.bool(BoolKey::LOCAL_AUTHORIZE_OFFLINE) {
                    self.log.info(
                        "auth",
                        format!("{id_tag} accepted offline from the {source}"),
                    );
                    self.grant(id_tag, info, profile);
                } else if info.is_valid_at(now) {
                    self.log.warn(
                        "auth",
                        format!("{id_tag} refused offline: LocalAuthorizeOffline is off"),
                    );
                } else {
                    self.log.warn(
                        "auth",
                        format!(
                            "{id_tag} refused offline: {} in the {source}",
                            info.effective_status(now)
                        ),
                    );
                }
            }
            LocalDecision::Unknown => {
                if self.config.bool(BoolKey::ALLOW_OFFLINE_TX_FOR_UNKNOWN_ID) {
                    self.log.info(
                        "auth",
                        format!("{id_tag} unknown, accepted offline (AllowOfflineTxForUnknownId)"),
                    );
                    self.grant(id_tag, TagInfo::accepted(), profile);
                } else {
                    self.log.warn(
                        "auth",
                        format!("{id_tag} unknown and the CSMS is unreachable: refused"),
                    );
                }
            }
        }
    }

    /// The answer to an Authorize.req (None: no usable answer, decided by the offline rules).
    pub fn on_authorize_result(
        &mut self,
        id_tag: &str,
        result: Option<messages::AuthorizeResponse>,
    ) {
        let Some(pending) = self.auth.authorizing.take() else {
            return;
        };
        if pending.id_tag != id_tag {
            return;
        }
        let Authorizing {
            id_tag: tag,
            charging_profile: profile,
        } = pending;
        match result.map(|r| local_list::tag_info(&r.id_tag_info)) {
            Some(info) => {
                self.learn(&tag, &info);
                let now = self.now();
                if info.is_valid_at(now) {
                    self.log.info("auth", format!("{tag} accepted by the CSMS"));
                    self.grant(tag, info, profile);
                } else {
                    self.log.warn(
                        "auth",
                        format!("{tag} refused by the CSMS: {}", info.effective_status(now)),
                    );
                }
            }
            None => {
                self.log.warn(
                    "auth",
                    format!("no usable answer to Authorize for {tag}; deciding offline"),
                );
                let local = auth::lookup_local(&tag, self.local_list(), self.cache());
                self.decide_offline(tag, local, profile);
            }
        }
    }

    pub fn clear_cache(
        &mut self,
        _req: messages::ClearCacheRequest,
    ) -> messages::ClearCacheResponse {
        let status = match self.auth.cache.clear() {
            Ok(()) => {
                self.log.info("auth", "authorization cache cleared");
                messages::ClearCacheStatus::Accepted
            }
            Err(e) => {
                self.log
                    .error("auth", format!("cannot clear the cache: {e}"));
                messages::ClearCacheStatus::Rejected
            }
        };
        messages::ClearCacheResponse { status }
    }

    pub fn send_local_list(
        &mut self,
        req: messages::SendLocalListRequest,
    ) -> messages::SendLocalListResponse {
        let enabled = self.config.bool(BoolKey::LOCAL_AUTH_LIST_ENABLED);
        let resp = self.auth.local_list.handle(&req, enabled);
        self.log.info(
            "auth",
            format!(
                "SendLocalList {:?} version {}: {}",
                req.update_type, req.list_version, resp.status
            ),
        );
        resp
    }

    pub fn local_list_version(
        &mut self,
        _req: messages::GetLocalListVersionRequest,
    ) -> messages::GetLocalListVersionResponse {
        let enabled = self.config.bool(BoolKey::LOCAL_AUTH_LIST_ENABLED);
        self.auth.local_list.version_response(enabled)
    }
}
