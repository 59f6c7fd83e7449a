// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title FORGE payment router
/// @notice Moves a payment straight to the treasury and logs it against an invoice id. The
/// backend issues invoice ids and binds them to users; it never trusts tx.from, because a
/// smart wallet, relayer or friend may pay on a user's behalf.
contract PaymentRouter {
    using SafeERC20 for IERC20;

    IERC20 public immutable token;
    address public immutable treasury;

    event PaymentReceived(
        bytes32 indexed invoiceId,
        address indexed payer,
        address indexed token,
        uint256 amount,
        address treasury
    );

    error ZeroAmount();
    error ZeroAddress();

    constructor(IERC20 token_, address treasury_) {
        if (address(token_) == address(0) || treasury_ == address(0)) revert ZeroAddress();
        token = token_;
        treasury = treasury_;
    }

    /// @notice Pulls `amount` FORGE from the caller (needs prior approval) to the treasury.
    function pay(bytes32 invoiceId, uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        token.safeTransferFrom(msg.sender, treasury, amount);
        emit PaymentReceived(invoiceId, msg.sender, address(token), amount, treasury);
    }
}
