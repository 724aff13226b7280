//! MTA-STS policy discovery over DNS (hickory) and HTTPS (hyper + rustls).
